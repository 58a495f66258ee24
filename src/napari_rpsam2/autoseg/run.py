"""A whole stack through the generator and SAM2: instance labels plus a class map."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import jobs
from .follow import FollowOptions, follow_objects
from .generator import PromptGenerator, as_stack, normalise_stack
from .refine import RefineOptions, refine_slice

__all__ = ["AutosegObject", "AutosegResult", "autosegment"]


@dataclass
class AutosegObject:
    """One object written by a run.

    ``slice_index`` is the slice it was found on (its key slice when followed);
    ``area`` counts its pixels over all slices; ``slices`` is the first and last
    slice it was written on.
    """

    slice_index: int
    label: int
    class_name: str
    score: float
    area: int
    slices: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.slices is None:
            self.slices = (self.slice_index, self.slice_index)


@dataclass
class AutosegResult:
    """Labels ``(Z, H, W)`` (the target with new objects where it was empty), the class map, the objects."""

    labels: np.ndarray
    classes: np.ndarray
    class_names: list[str]
    objects: list[AutosegObject] = field(default_factory=list)


def _check_target(target: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if target is None:
        return np.zeros(shape, np.int32)
    target = np.asarray(target)
    if target.ndim == 2:
        target = target[None]
    if target.shape != shape:
        raise ValueError(f"the labels to write into are {target.shape} but the images are {shape}; "
                         "pick labels of the same size")
    return target.astype(np.int32 if target.dtype.itemsize <= 4 else target.dtype, copy=True)


def autosegment(
    model,
    generator: PromptGenerator,
    stack: np.ndarray,
    *,
    options: RefineOptions = RefineOptions(),
    follow: FollowOptions = FollowOptions(),
    target: np.ndarray | None = None,
    slices: Sequence[int] | None = None,
    rgb: bool | None = None,
    contrast_limits: Sequence[float] | None = None,
    gamma: float = 1.0,
    key: Hashable | None = None,
    progress: jobs.Progress | None = None,
    cancel: jobs.Cancel | None = None,
) -> AutosegResult:
    """Find every class on the chosen slices and write each object where ``target`` is empty.

    Parameters
    ----------
    model : RPSAM2 or None
        SAM2 (and its shift block) for the refinement; ``None`` only with ``options.stages == 0``.
    generator : PromptGenerator
    stack : array ``(Z, H, W[, 3])`` or one image
    options : RefineOptions
        Stages, mask prompt, clicks, minimum area; ``options.follow`` follows each
        object through the stack from its key slice instead (:mod:`.follow`).
    follow : FollowOptions
        Direction and stop rule of the following (used only with ``options.follow``).
    target : int array like the stack's labels, optional
        Existing labels: kept as they are, new objects fill only its zeros with fresh ids.
    slices : list of int, optional
        Slices to segment (default all); when following, objects are found and
        followed over the slices from the first to the last of them.
    rgb, contrast_limits, gamma, key
        How SAM2 sees the slices (as the other use cases pass them); ``key`` names the stack
        for the embedding cache (slice ``z`` is ``(key, z)``).
    progress, cancel
        ``progress("slices", done, total)``; ``cancel()`` stops with :class:`jobs.Cancelled`
        before anything is returned.
    """
    stack, rgb = as_stack(stack, rgb)
    generator.check_stack(stack, rgb)
    if options.stages and model is None:
        raise ValueError("SAM2 refinement (stages 1 or 2) needs a model; use stages 0 for the generator alone")
    if options.follow and model is None:
        raise ValueError("following objects through the stack needs SAM2: load a model, or switch following off")
    z_count = stack.shape[0]
    labels = _check_target(target, stack.shape[:3])
    chosen = list(range(z_count)) if slices is None else [int(z) for z in slices]
    bad = [z for z in chosen if not 0 <= z < z_count]
    if bad:
        raise ValueError(f"slice {bad[0]} is outside the stack (0–{z_count - 1})")
    classes = np.zeros(stack.shape[:3], np.int32)
    norm = normalise_stack(stack, rgb)
    if options.follow and chosen:
        followed = follow_objects(model, generator, stack, norm, labels, classes, range(min(chosen), max(chosen) + 1),
                                  options, follow, rgb=rgb, contrast_limits=contrast_limits, gamma=gamma, key=key,
                                  progress=progress, cancel=cancel)
        return AutosegResult(labels, classes, generator.classes, [
            AutosegObject(o.key.slice_index, o.label, generator.classes[o.key.class_index - 1], o.score, o.area,
                          o.slices) for o in followed])
    next_id = int(labels.max(initial=0)) + 1
    found: list[AutosegObject] = []
    for done, z in enumerate(chosen):
        jobs.check(cancel, "automatic segmentation")
        jobs.report(progress, "slices", done, len(chosen))
        prediction = generator.predict_normalised(norm, z)
        emb = None
        if options.stages:
            emb = model.embed(stack[z], contrast_limits=contrast_limits, gamma=gamma, rgb=rgb,
                              key=None if key is None else (key, z))
        for obj in refine_slice(model, emb, prediction, options):
            free = obj.mask & (labels[z] == 0)
            if not free.any():
                continue
            labels[z][free] = next_id
            classes[z][free] = obj.class_index
            found.append(AutosegObject(z, next_id, generator.classes[obj.class_index - 1], obj.score,
                                       int(free.sum())))
            next_id += 1
    jobs.report(progress, "slices", len(chosen), len(chosen))
    return AutosegResult(labels, classes, generator.classes, found)
