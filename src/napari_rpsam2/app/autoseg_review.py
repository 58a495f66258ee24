"""Automatic segmentation with a person in the loop: the use cases of the "Automatic segmentation" dock.

Train the prompt generator on arrays (an image stack and its labels as a
viewer holds them), let it propose one box per region, let a person review
the boxes, then run only SAM2's refinement from the reviewed boxes and write
the objects where the target is empty.  Qt- and napari-free: the dock (and
tests) call these with plain arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import jobs
from ..autoseg import (
    GeneratorConfig,
    GeneratorData,
    GeneratorTrainConfig,
    GeneratorTrainResult,
    PromptGenerator,
    train_generator,
)
from ..autoseg.components import Component, components
from ..autoseg.generator import SlicePrediction, as_stack, normalise_with, stack_limits
from ..autoseg.refine import RefineOptions, refine_component
from ..io.label_volume import label_max
from ..training.data import DataError
from .autoseg import _class_ids, class_table
from .label_changes import LabelChange

__all__ = ["BoxProposal", "RefinedBox", "FollowedRun", "follow_boxes", "write_followed", "generator_data_from_arrays",
           "train_generator_on_arrays", "propose_boxes", "refine_boxes", "write_objects", "slice_choice"]


@dataclass
class BoxProposal:
    """One box on one slice: what the generator proposed, or what a person left after review.

    ``box`` is ``(top, left, bottom, right)`` in pixel centres (inclusive), as
    :class:`~napari_rpsam2.autoseg.components.Component` holds it.
    """

    slice_index: int
    class_index: int
    class_name: str
    box: np.ndarray
    score: float = 1.0


@dataclass
class RefinedBox:
    """SAM2's mask for one box, kept as its bounding crop (``mask`` starts at ``(top, left)``)."""

    slice_index: int
    class_index: int
    top: int
    left: int
    mask: np.ndarray
    score: float
    box: np.ndarray | None = None  # the reviewed box it came from, (top, left, bottom, right)


def _stack(data, rgb: bool | None) -> tuple[object, bool]:
    """``(Z, H, W[, 3])`` without reading a stack already shaped so (a lazy layer stays lazy); 2D becomes one slice."""
    shape = np.shape(data)
    if rgb is None:
        rgb = len(shape) in (3, 4) and shape[-1] == 3
    if len(shape) == (4 if rgb else 3):
        return data, bool(rgb)
    return as_stack(np.asarray(data), rgb)


class _SlicePredictor:
    """The generator on single slices of a stack, normalised as the whole stack would be (only the slice
    and its context are read and normalised)."""

    def __init__(self, generator: PromptGenerator, stack, rgb: bool) -> None:
        self.generator, self.stack, self.rgb = generator, stack, rgb
        self.limits = stack_limits(stack, rgb)

    def __call__(self, z: int) -> SlicePrediction:
        c, n = self.generator.config.context, np.shape(self.stack)[0]
        picks = [min(max(z + d, 0), n - 1) for d in range(-c, c + 1)]
        return self.generator.predict_normalised(normalise_with(self.stack[picks], self.limits, self.rgb), c)


def generator_data_from_arrays(image: np.ndarray, labels: np.ndarray, *, rgb: bool,
                               class_names: Mapping[int, str] | None = None) -> GeneratorData:
    """One annotated stack ``(Z, H, W[, 3])`` (or one image) and its labels as generator data.

    ``class_names`` maps label ids to class names (several ids may share a
    class: instance labels with a class table); without it each id is a class
    named by its number.  Slices without any label are left out (unannotated,
    not background); each run of consecutive annotated slices is one stack, so
    neighbouring-slice context never reaches an unannotated slice.  Raises :class:`DataError` saying what to fix.
    """
    stack, rgb = as_stack(np.asarray(image), rgb)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.shape != stack.shape[:3]:
        raise DataError(f"the labels are {labels.shape} but the image is {stack.shape[:3]}; "
                        "pick the labels made for this image")
    names, table = class_table(np.unique(labels), dict(class_names) if class_names else None)
    annotated = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))
    runs = np.split(annotated, np.flatnonzero(np.diff(annotated) > 1) + 1)  # consecutive annotated slices
    stacks = [stack[r[0]:r[-1] + 1] for r in runs]
    maps = [_class_ids(labels[r[0]:r[-1] + 1], table) for r in runs]
    return GeneratorData(stacks, maps, names, rgb)


def train_generator_on_arrays(image: np.ndarray, labels: np.ndarray, *, rgb: bool,
                              class_names: Mapping[int, str] | None = None,
                              config: GeneratorConfig | None = None,
                              train_config: GeneratorTrainConfig = GeneratorTrainConfig(),
                              progress: jobs.Progress | None = None,
                              on_epoch: Callable | None = None,
                              cancel: jobs.Cancel | None = None) -> GeneratorTrainResult:
    """Train a prompt generator on one annotated stack; nothing is written (save it with ``save_generator``)."""
    data = generator_data_from_arrays(image, labels, rgb=rgb, class_names=class_names)
    tc = train_config
    result = train_generator(data, config or GeneratorConfig(), tc, progress=progress, on_epoch=on_epoch,
                             cancel=cancel)
    result.generator.header = {  # what save_generator records about the run
        "training": {"source": "napari layers", "slices": data.n_slices, "classes": data.classes,
                     "epochs": tc.epochs, "best_epoch": result.best_epoch, "train_slices": result.n_train,
                     "val_slices": result.n_val, "lr": tc.lr, "batch_size": tc.batch_size, "augment": tc.augment,
                     "seed": tc.seed},
        "metrics": {"val_dice": result.best_val_dice}}
    return result


def slice_choice(mode: str, current: int, first: int, last: int, n_slices: int) -> list[int]:
    """The slices a run covers: ``"current"`` (the slice on screen), ``"range"`` (``first``–``last``) or ``"all"``.

    Raises ``ValueError`` with what to fix for a range outside the stack.
    """
    if mode == "current":
        return [int(current)]
    if mode == "all":
        return list(range(n_slices))
    if not 0 <= first <= last < n_slices:
        raise ValueError(f"slices {first}–{last} are not a range inside the stack (0–{n_slices - 1}); "
                         "give a first slice not after the last")
    return list(range(int(first), int(last) + 1))


def propose_boxes(generator: PromptGenerator, stack: np.ndarray, slices: Sequence[int], *, rgb: bool | None = None,
                  min_area: int = 16, progress: jobs.Progress | None = None,
                  cancel: jobs.Cancel | None = None) -> list[BoxProposal]:
    """The generator's regions on ``slices`` as boxes (one per connected region, largest first per class)."""
    stack, rgb = _stack(stack, rgb)
    generator.check_stack(np.zeros((1, 1, 1, 3) if rgb else (1, 1, 1)), rgb)
    n = np.shape(stack)[0]
    bad = [z for z in slices if not 0 <= z < n]
    if bad:
        raise ValueError(f"slice {bad[0]} is outside the stack (0–{n - 1})")
    predict = _SlicePredictor(generator, stack, rgb)
    out: list[BoxProposal] = []
    for done, z in enumerate(slices):
        jobs.check(cancel, "box proposal")
        jobs.report(progress, "slices", done, len(slices))
        prediction = predict(int(z))
        out += [BoxProposal(int(z), c.class_index, generator.classes[c.class_index - 1], c.box.copy(), c.score)
                for c in components(prediction, min_area=min_area)]
    jobs.report(progress, "slices", len(slices), len(slices))
    return out


def _box_component(proposal: BoxProposal, hw: tuple[int, int]) -> Component:
    """A reviewed box as a component (its mask is the box: only the clicks option reads it)."""
    h, w = hw
    top, left, bottom, right = (int(round(v)) for v in proposal.box)
    top, left = min(max(top, 0), h - 1), min(max(left, 0), w - 1)
    bottom, right = min(max(bottom, top), h - 1), min(max(right, left), w - 1)
    mask = np.zeros(hw, bool)
    mask[top:bottom + 1, left:right + 1] = True
    return Component(proposal.class_index, mask, np.array([top, left, bottom, right], float), proposal.score)


def refine_boxes(model, generator: PromptGenerator, stack: np.ndarray, boxes: Sequence[BoxProposal], *,
                 options: RefineOptions = RefineOptions(), rgb: bool | None = None,
                 contrast_limits: Sequence[float] | None = None, gamma: float = 1.0, key=None,
                 progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None) -> list[RefinedBox]:
    """Masks for reviewed boxes; nothing is written.

    ``options.stages`` 1 or 2: SAM2's refinement, each box being stage 1's box
    and the generator's log-odds of the box's class on its slice the mask prompt
    (as in the automatic path).  0: the generator's own region of the box's class
    inside the box (no SAM2; ``model`` may be ``None``).  ``key`` names the stack
    for the embedding cache (slice ``z`` is ``(key, z)``); ``progress("slices", …)``
    after each slice; ``cancel()`` is checked before every SAM2 call.
    """
    if options.stages and model is None:
        raise ValueError("SAM2 refinement (stages 1 or 2) needs a model; stage 0 uses the generator alone")
    stack, rgb = _stack(stack, rgb)
    generator.check_stack(np.zeros((1, 1, 1, 3) if rgb else (1, 1, 1)), rgb)
    n, hw = np.shape(stack)[0], tuple(np.shape(stack)[1:3])
    names = generator.classes
    for b in boxes:
        if not 1 <= b.class_index <= len(names):
            raise ValueError(f"a box on slice {b.slice_index} has class {b.class_index}, but the generator knows "
                             f"only {names}; give each box one of these classes")
        if not 0 <= b.slice_index < n:
            raise ValueError(f"a box lies on slice {b.slice_index}, outside the stack (0–{n - 1})")
    by_slice: dict[int, list[BoxProposal]] = {}
    for b in boxes:
        by_slice.setdefault(int(b.slice_index), []).append(b)
    predict = _SlicePredictor(generator, stack, rgb)
    out: list[RefinedBox] = []
    for done, z in enumerate(sorted(by_slice)):
        jobs.check(cancel, "refinement")
        jobs.report(progress, "slices", done, len(by_slice))
        prediction = predict(z)
        emb = None
        if options.stages:
            emb = model.embed(np.asarray(stack[z]), contrast_limits=contrast_limits, gamma=gamma, rgb=rgb,
                              key=None if key is None else (key, z))
        for b in by_slice[z]:
            jobs.check(cancel, "refinement")
            comp = _box_component(b, hw)
            if options.stages:
                mask, score = (obj := refine_component(model, emb, comp, prediction, options)).mask, obj.score
            else:
                mask, score = comp.mask & (prediction.class_map() == b.class_index), b.score
            rows, cols = np.nonzero(mask)
            if rows.size == 0:
                continue
            top, left = int(rows.min()), int(cols.min())
            out.append(RefinedBox(z, b.class_index, top, left,
                                  mask[top:int(rows.max()) + 1, left:int(cols.max()) + 1].copy(), score,
                                  np.asarray(b.box, float)))
    jobs.report(progress, "slices", len(by_slice), len(by_slice))
    return out


def write_objects(labels, classes, objects: Sequence[RefinedBox],
                  ids: list | None = None) -> tuple[LabelChange, LabelChange, int]:
    """Write each object into ``labels`` where it is 0 (a fresh id each) and its class into ``classes``.

    ``labels`` and ``classes`` are ``(Z, H, W)`` (or ``(H, W)``) arrays changed in
    place; an object with no empty pixel left is skipped.  Returns one undo record
    per array and the number of objects written; ``ids``, when given, gets
    ``(label id, object)`` of each object written.
    """
    two_d = np.ndim(labels) == 2
    shape = np.shape(labels)
    if np.shape(classes) != shape:
        raise DataError(f"the class map is {np.shape(classes)} but the labels are {shape}; they must match")
    next_id = label_max(labels) + 1
    by_slice: dict[int, list[RefinedBox]] = {}
    for o in objects:
        by_slice.setdefault(o.slice_index, []).append(o)
    planes_l, planes_c, written = [], [], 0
    for z in sorted(by_slice):
        index = () if two_d else (z,)
        old_l = np.array(labels[index] if index else labels)
        old_c = np.array(classes[index] if index else classes)
        new_l, new_c = old_l.copy(), old_c.copy()
        for o in by_slice[z]:
            h, w = o.mask.shape
            view = new_l[o.top:o.top + h, o.left:o.left + w]
            free = o.mask & (view == 0)
            if not free.any():
                continue
            view[free] = next_id
            new_c[o.top:o.top + h, o.left:o.left + w][free] = o.class_index
            if ids is not None:
                ids.append((next_id, o))
            next_id, written = next_id + 1, written + 1
        planes_l.append((index, old_l, new_l))
        planes_c.append((index, old_c, new_c))
    change_l, change_c = LabelChange.of_planes(planes_l), LabelChange.of_planes(planes_c)
    change_l.redo(labels)
    change_c.redo(classes)
    return change_l, change_c, written


@dataclass
class FollowedRun:
    """Reviewed boxes followed through a stack (nothing written yet): per object its id in ``labels``.

    ``labels`` / ``classes`` hold only the followed objects (0 elsewhere), ids
    ``1..``; ``objects`` are ``(id, RefinedBox)`` with the key slice, class, box
    and score of each (the box's mask is left empty).
    """

    labels: np.ndarray
    classes: np.ndarray
    objects: list


def follow_boxes(model, generator: PromptGenerator, stack, boxes: Sequence[BoxProposal], occupied=None, *,
                 options: RefineOptions = RefineOptions(), follow=None, rgb: bool | None = None,
                 contrast_limits: Sequence[float] | None = None, gamma: float = 1.0, key=None,
                 progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None) -> FollowedRun:
    """Each reviewed box is a key slice: refined there, then followed through the stack with SAM2's memory.

    The reviewed boxes replace :func:`~napari_rpsam2.autoseg.follow.find_key_slices`
    (each box on its slice is one object; stage 0 takes the generator's region
    of the box's class inside the box).  ``occupied`` ``(Z, H, W)`` (or ``None``):
    where the target already holds labels; nothing is followed into those pixels, and
    an object whose key-slice mask is mostly there is skipped.
    """
    from ..autoseg.follow import FollowOptions, KeySlice, follow_key_slices

    if model is None:
        raise ValueError("following objects through the stack needs a SAM2 model: load one first")
    stack, rgb = _stack(stack, rgb)
    if np.ndim(stack) != (4 if rgb else 3):
        raise ValueError("following objects needs a stack of slices, not a single image")
    occupied = np.zeros(np.shape(stack)[:3], bool) if occupied is None else occupied
    n, hw = np.shape(stack)[0], tuple(np.shape(stack)[1:3])
    predict = _SlicePredictor(generator, stack, rgb)
    keys = []
    for b in boxes:
        comp = _box_component(b, hw)
        if not options.stages:
            comp.mask &= predict(int(b.slice_index)).class_map() == b.class_index
        if comp.mask.any():
            keys.append((b, KeySlice(b.class_index, int(b.slice_index), float(b.score), (0, n - 1), comp)))
    norm = normalise_with(np.asarray(stack), predict.limits, rgb)
    labels = np.where(np.asarray(occupied) != 0, -1, 0).astype(np.int32)  # -1: the target's own labels
    classes = np.zeros(labels.shape, np.int32)
    written = follow_key_slices(model, generator, stack, norm, [k for _, k in keys], labels, classes, range(n),
                                options, follow or FollowOptions(), rgb=rgb, contrast_limits=contrast_limits,
                                gamma=gamma, key=key, progress=progress, cancel=cancel)
    labels[labels < 0] = 0
    by_key = {id(k): b for b, k in keys}
    objects = [(o.label, RefinedBox(o.key.slice_index, o.key.class_index, 0, 0, np.zeros((0, 0), bool), o.score,
                                    np.asarray(by_key[id(o.key)].box, float))) for o in written]
    return FollowedRun(labels, classes, objects)


def write_followed(labels, classes, run: FollowedRun) -> tuple[LabelChange, LabelChange, list]:
    """Write a :class:`FollowedRun` into ``labels`` / ``classes`` where ``labels`` is still 0 (fresh ids).

    Returns one undo record per array and ``(label id, RefinedBox)`` of each object written.
    """
    next_id = label_max(labels) + 1
    ids, written = {}, []
    for oid, obj in run.objects:
        ids[oid] = next_id
        written.append((next_id, obj))
        next_id += 1
    planes_l, planes_c = [], []
    for z in np.flatnonzero(run.labels.reshape(len(run.labels), -1).any(axis=1)):
        old_l, old_c = np.array(labels[z]), np.array(classes[z])
        new_l, new_c = old_l.copy(), old_c.copy()
        for oid, new in ids.items():
            free = (run.labels[z] == oid) & (new_l == 0)
            new_l[free], new_c[free] = new, run.classes[z][free]
        planes_l.append(((int(z),), old_l, new_l))
        planes_c.append(((int(z),), old_c, new_c))
    change_l, change_c = LabelChange.of_planes(planes_l), LabelChange.of_planes(planes_c)
    change_l.redo(labels)
    change_c.redo(classes)
    present = {int(v) for v in np.unique([p[2] for p in planes_l]) if v} if planes_l else set()
    return change_l, change_c, [(i, o) for i, o in written if i in present]
