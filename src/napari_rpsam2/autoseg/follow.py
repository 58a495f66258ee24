"""Following each object the generator finds through a stack with SAM2's memory (``RefineOptions.follow``).

1. The generator predicts every slice of the range; per class, its arg-max
   map is split into connected 3D components (slices joined through faces).
2. Each component gets one **key slice**: the slice where its cross-section
   holds the most class probability, i.e. mean probability × area, among
   cross-sections of at least ``min_area`` pixels (ties: the earliest slice).
   A large, confident cross-section gives SAM2 the most to track from.
3. The cross-section is refined on its key slice (stages 0, 1 or 2, as on
   one slice: :func:`.refine.refine_component`).
4. The refined mask is SAM2's mask prompt on the key slice; the propagation
   engine (:class:`~napari_rpsam2.model.propagation.PropagationSession`)
   tracks the object from there, both directions by default, and drops it
   once its object score stays below ``stop_threshold`` for ``stop_after``
   slices in a row (the engine's stop rule).
5. Objects go in order of key-slice confidence, each with its own id and
   class; each writes only where the labels are still empty.  An object
   whose key-slice mask is already more than ``covered`` labelled is not
   followed (an object followed before it, or a person's, is already there).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from .. import jobs
from .components import Component, mask_box
from .generator import PromptGenerator

__all__ = ["FollowOptions", "KeySlice", "FollowedObject", "stack_class_maps", "key_slices", "find_key_slices",
           "follow_key_slices", "follow_objects"]


@dataclass(frozen=True)
class FollowOptions:
    """How objects are followed from their key slices.

    Attributes
    ----------
    direction : "both", "forward" or "backward"
        From the key slice on (SAM2's ``propagate_in_video`` from that slice).
    stop_after : int or None
        Drop an object after this many slices in a row with its object score
        below ``stop_threshold`` (``None``: track to the end of the range).
    stop_threshold : float
        SAM2's object-score logit below which the object counts as gone.
    covered : float
        Skip an object whose key-slice mask is already more than this share labelled.
    """

    direction: str = "both"
    stop_after: int | None = 2
    stop_threshold: float = 0.0
    covered: float = 0.5

    def __post_init__(self) -> None:
        if self.direction not in ("both", "forward", "backward"):
            raise ValueError(f"direction must be both, forward or backward (got {self.direction!r})")
        if self.stop_after is not None and self.stop_after < 1:
            raise ValueError(f"stop_after must be at least 1 slice, or None (got {self.stop_after})")
        if not 0 < self.covered <= 1:
            raise ValueError(f"covered must be a share above 0 and at most 1 (got {self.covered})")


@dataclass
class KeySlice:
    """One connected 3D component of one class and the slice it is followed from.

    Attributes
    ----------
    class_index : int
        1-based class.
    slice_index : int
        The key slice (stack index).
    confidence : float
        Class probability summed over the cross-section there (mean × area).
    extent : (int, int)
        First and last slice of the component (stack indices).
    component : Component
        The cross-section on the key slice (its ``score``: mean probability).
    """

    class_index: int
    slice_index: int
    confidence: float
    extent: tuple[int, int]
    component: Component


def stack_class_maps(generator: PromptGenerator, norm: np.ndarray, slices: Sequence[int], *,
                     progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max class ``(len(slices), H, W)`` uint8 and its probability (float16) over ``slices``.

    Only these two planes per slice are kept (not every class's map), so a
    long stack costs 3 bytes per pixel.
    """
    if len(generator.classes) > 255:
        raise ValueError("following objects supports at most 255 classes")
    n, (h, w) = len(slices), norm.shape[1:3]
    cmaps, conf = np.zeros((n, h, w), np.uint8), np.zeros((n, h, w), np.float16)
    for i, z in enumerate(slices):
        jobs.check(cancel, "automatic segmentation")
        jobs.report(progress, "slices", i, n)
        pred = generator.predict_normalised(norm, int(z))
        cmaps[i] = pred.class_map()
        conf[i] = pred.probabilities.max(axis=0)
    jobs.report(progress, "slices", n, n)
    return cmaps, conf


def key_slices(class_maps: np.ndarray, confidence: np.ndarray, n_classes: int, *, min_area: int = 16,
               first: int = 0) -> list[KeySlice]:
    """One key slice per connected 3D component of every class, most confident first.

    Parameters
    ----------
    class_maps, confidence : ndarray (Z, H, W)
        The generator's arg-max class and its probability (:func:`stack_class_maps`).
    n_classes : int
    min_area : int
        Cross-sections smaller than this cannot be key slices; a component with none is dropped.
    first : int
        Stack index of ``class_maps[0]`` (the range's start).
    """
    from scipy import ndimage

    z_count = class_maps.shape[0]
    out: list[KeySlice] = []
    for k in range(1, n_classes + 1):
        regions, n = ndimage.label(class_maps == k)  # 3D, face connectivity
        if n == 0:
            continue
        inside = regions > 0
        cell = (regions[inside].astype(np.int64) - 1) * z_count + np.nonzero(inside)[0]
        area = np.bincount(cell, minlength=n * z_count).reshape(n, z_count)
        mass = np.bincount(cell, weights=confidence[inside].astype(np.float64),
                           minlength=n * z_count).reshape(n, z_count)
        mass = np.where(area >= min_area, mass, -1.0)
        for rid in range(n):
            z = int(np.argmax(mass[rid]))  # the earliest of equal slices
            if mass[rid, z] < 0:
                continue
            mask = regions[z] == rid + 1
            present = np.flatnonzero(area[rid])
            comp = Component(k, mask, mask_box(mask), float(mass[rid, z] / area[rid, z]))
            out.append(KeySlice(k, first + z, float(mass[rid, z]),
                                (first + int(present[0]), first + int(present[-1])), comp))
    out.sort(key=lambda s: (-s.confidence, s.slice_index, s.class_index))
    return out


@dataclass
class FollowedObject:
    """What one followed object wrote (before it is turned into an ``AutosegObject``)."""

    key: KeySlice
    label: int
    score: float
    area: int
    slices: tuple[int, int]


def _refined_masks(model, generator, norm, keys, options, embed, progress, cancel) -> list:
    """Each key slice's cross-section refined there (``None`` where the refinement came back empty)."""
    from .refine import refine_component

    masks = []
    for i, ks in enumerate(keys):
        jobs.check(cancel, "automatic segmentation")
        jobs.report(progress, "key slices", i, len(keys))
        pred = generator.predict_normalised(norm, ks.slice_index)
        emb = embed(ks.slice_index) if options.stages else None
        obj = refine_component(model, emb, ks.component, pred, options)
        masks.append((obj.mask, obj.score) if obj.mask.any() else None)
    jobs.report(progress, "key slices", len(keys), len(keys))
    return masks


def find_key_slices(generator: PromptGenerator, norm: np.ndarray, span: range, *, min_area: int = 16,
                    progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None) -> list[KeySlice]:
    """The generator over the slices ``span`` of a normalised stack, then one key slice per 3D component.

    A front end may show the key slices' boxes (``component.box``) for review
    and pass the kept ones, with edited boxes, to :func:`follow_key_slices`.
    """
    cmaps, conf = stack_class_maps(generator, norm, span, progress=progress, cancel=cancel)
    return key_slices(cmaps, conf, len(generator.classes), min_area=min_area, first=span.start)


def follow_key_slices(model, generator: PromptGenerator, stack, norm: np.ndarray, keys: Sequence[KeySlice],
                      labels: np.ndarray, classes: np.ndarray, span: range, options,
                      follow: FollowOptions = FollowOptions(), *, rgb: bool,
                      contrast_limits: Sequence[float] | None = None, gamma: float = 1.0,
                      key: Hashable | None = None, progress: jobs.Progress | None = None,
                      cancel: jobs.Cancel | None = None) -> list[FollowedObject]:
    """Refine each key slice's object there and follow it over ``span``; write into ``labels``/``classes``.

    ``keys`` are followed in their order (most confident first from
    :func:`key_slices`).  ``labels`` and ``classes`` ``(Z, H, W)`` are written
    in place, only where ``labels`` is 0; ``options`` is the run's
    :class:`.refine.RefineOptions`.  Returns the objects written, in order.
    """
    from ..model.prompts import FramePrompt
    from ..model.propagation import PropagationSession

    session = PropagationSession(model, stack, contrast_limits=contrast_limits, gamma=gamma, rgb=rgb, key=key)
    refined = _refined_masks(model, generator, norm, keys, options, session.embedding, progress, cancel)
    chosen = [(i + 1, ks, *r) for i, (ks, r) in enumerate(zip(keys, refined)) if r is not None]
    if not chosen:
        return []
    session.add([FramePrompt(ks.slice_index, oid, mask=mask) for oid, ks, mask, _ in chosen], refine=False)
    next_id = int(labels.max(initial=0)) + 1
    written: list[FollowedObject] = []
    for done, (oid, ks, mask, score) in enumerate(chosen):
        jobs.report(progress, "objects", done, len(chosen))
        if (labels[ks.slice_index][mask] != 0).mean() > follow.covered:
            continue
        result = session.run(follow.direction, span.start, span.stop, from_slice=ks.slice_index, objects=[oid],
                             stop_threshold=follow.stop_threshold, stop_after=follow.stop_after,
                             progress=progress, cancel=cancel)
        area, reached = 0, []
        for t in np.flatnonzero(result.tracked):
            free = (result.labels[t] == oid) & (labels[t] == 0)
            if free.any():
                labels[t][free], classes[t][free] = next_id, ks.class_index
                area += int(free.sum())
                reached.append(int(t))
        if area:
            written.append(FollowedObject(ks, next_id, score, area, (reached[0], reached[-1])))
            next_id += 1
    jobs.check(cancel, "automatic segmentation")
    jobs.report(progress, "objects", len(chosen), len(chosen))
    return written


def follow_objects(model, generator: PromptGenerator, stack, norm: np.ndarray, labels: np.ndarray,
                   classes: np.ndarray, span: range, options, follow: FollowOptions = FollowOptions(), *,
                   rgb: bool, contrast_limits: Sequence[float] | None = None, gamma: float = 1.0,
                   key: Hashable | None = None, progress: jobs.Progress | None = None,
                   cancel: jobs.Cancel | None = None) -> list[FollowedObject]:
    """:func:`find_key_slices` then :func:`follow_key_slices`: every object found, refined and followed."""
    keys = find_key_slices(generator, norm, span, min_area=options.min_area, progress=progress, cancel=cancel)
    return follow_key_slices(model, generator, stack, norm, keys, labels, classes, span, options, follow, rgb=rgb,
                             contrast_limits=contrast_limits, gamma=gamma, key=key, progress=progress,
                             cancel=cancel)
