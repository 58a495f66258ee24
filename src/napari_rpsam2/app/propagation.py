"""Use case: propagate objects through a stack into a label volume, with one Undo, and correct them.

Qt-free; the one propagation path of both front ends.  ``rpsam2 propagate``
calls :func:`propagate_stack`; the Propagate dock keeps a
:class:`PropagationRun` per image (SAM2's tracking state across runs) and
calls :meth:`PropagationRun.propagate` / :meth:`PropagationRun.correct` from a
worker thread, then :func:`write_new_labels` / :func:`replace_objects` on the
main thread.  A first run writes only where the target is 0; a correction
replaces the corrected objects' pixels on the slices it tracked and leaves
every other object alone.  The returned :class:`PropagationUndo` takes a
whole run back in one step.  A cancelled run raises
:class:`napari_rpsam2.jobs.Cancelled` before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .. import jobs
from ..io.label_volume import label_max, planes_in_use
from ..model.label_planes import LabelPlanes
from ..model.prompts import FramePrompt, PromptError
from ..model.propagation import PropagationResult, PropagationSession, slice_range
from .label_changes import LabelChange, SliceChange

__all__ = ["PropagationOptions", "PropagationRun", "PropagationUndo", "propagate_into_labels", "propagate_stack",
           "renumber_taken_ids", "replace_objects", "write_new_labels"]


@dataclass(frozen=True)
class PropagationOptions:
    """How a run goes: see :func:`napari_rpsam2.model.propagation.propagate`.

    ``start``/``stop``: slices ``start <= i < stop`` (``None``: the whole stack).
    """

    direction: str = "both"
    start: int | None = None
    stop: int | None = None
    refine: bool = True
    stop_after: int | None = None
    stop_threshold: float = 0.0


class PropagationRun:
    """One image's propagation, kept between runs so that corrections use SAM2's memory.

    Parameters
    ----------
    model : RPSAM2
    stack : array-like (N, H, W[, C])
        Read one slice at a time.
    contrast_limits, gamma, rgb, key
        As for :meth:`RPSAM2.embed` (``key``: slice ``i`` is cached under ``(key, i)``).
    """

    def __init__(self, model, stack, *, contrast_limits: Sequence[float] | None = None, gamma: float = 1.0,
                 rgb: bool | None = None, key=None) -> None:
        self.session = PropagationSession(model, stack, contrast_limits=contrast_limits, gamma=gamma, rgb=rgb,
                                          key=key)

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Objects that have prompts in this run."""
        return self.session.object_ids

    def propagate(self, prompts: Iterable[FramePrompt], options: PropagationOptions = PropagationOptions(), *,
                  from_slice: int | None = None, objects: Iterable[int] | None = None,
                  progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None,
                  on_frame: Callable[[int, np.ndarray], None] | None = None) -> PropagationResult:
        """Add ``prompts`` and track (all objects, or ``objects`` from ``from_slice``)."""
        slice_range(options.start, options.stop, self.session.num_slices)
        if options.stop_after is not None and options.stop_after < 1:
            raise PromptError(f"stop after must be at least 1 slice (or none), got {options.stop_after}")
        self.session.add(prompts, refine=options.refine)
        return self.session.run(options.direction, options.start, options.stop, from_slice=from_slice,
                                objects=objects, stop_threshold=options.stop_threshold,
                                stop_after=options.stop_after, progress=progress, cancel=cancel,
                                on_frame=on_frame)

    def correct(self, prompts: Iterable[FramePrompt], options: PropagationOptions = PropagationOptions(), *,
                progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None,
                on_frame: Callable[[int, np.ndarray], None] | None = None) -> PropagationResult:
        """Correct objects on one slice and track only them again from there, with the memory kept.

        ``prompts`` lie on one slice; an object new to this run is added there.
        Every pass of ``options.direction`` starts at that slice (SAM2's
        ``propagate_in_video(start_frame_idx=slice)``); the other objects are
        not run.  The result leaves out (``tracked`` false) the corrected
        objects' other prompted slices, so what they hold there is kept.
        """
        prompts = list(prompts)
        slices = sorted({p.slice for p in prompts})
        if len(slices) != 1:
            raise PromptError(f"a correction is made on one slice; these prompts lie on slices {slices}")
        objects = sorted({p.object for p in prompts})
        result = self.propagate(prompts, options, from_slice=slices[0], objects=objects, progress=progress,
                                cancel=cancel, on_frame=on_frame)
        prompted = self.session.prompted_slices()
        for t in {t for o in objects for t in prompted.get(o, ())} - set(slices):
            result.tracked[t] = False  # the objects' own prompts elsewhere (e.g. committed masks) stay as they are
        return result


def propagate_stack(model, stack, prompts: Iterable[FramePrompt], options: PropagationOptions = PropagationOptions(),
                    *, contrast_limits: Sequence[float] | None = None, gamma: float = 1.0, rgb: bool | None = None,
                    key=None, progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None,
                    on_frame: Callable[[int, np.ndarray], None] | None = None) -> PropagationResult:
    """The objects of ``prompts`` through ``stack`` (a new label volume in ``result.labels``): ``rpsam2 propagate``."""
    run = PropagationRun(model, stack, contrast_limits=contrast_limits, gamma=gamma, rgb=rgb, key=key)
    return run.propagate(prompts, options, progress=progress, cancel=cancel, on_frame=on_frame)


@dataclass
class PropagationUndo:
    """What one propagation wrote, and what was there before (0, or an object a correction replaced), compactly.

    Attributes
    ----------
    change : LabelChange
        Per slice: the box, a bit per pixel written and the values before and after (see :mod:`.label_changes`).
    """

    change: LabelChange = field(default_factory=LabelChange)

    @property
    def pixels(self) -> int:
        """Number of pixels the propagation labelled."""
        return self.change.size

    @property
    def slices(self) -> list[int]:
        """Slices that received pixels, in order."""
        return [index[0] for index in self.change.slice_indices]

    def undo(self, target: np.ndarray) -> list[int]:
        """Put the old values back where this propagation wrote and the value is still its own.

        Pixels the user edited since keep the user's value.  Returns the slices changed.
        """
        return [index[0] for index in self.change.undo(target)]


def renumber_taken_ids(result: PropagationResult, target: np.ndarray,
                       new_ids: Iterable[int]) -> tuple[PropagationResult, dict[int, int]]:
    """Give fresh ids to new objects whose id the target holds by now.

    The ids of new objects (clicks, boxes) are picked when a run starts, one
    above the largest label then.  A person may label something with that id
    while the run goes on; writing the result as it is would merge the two.
    Returns the result (labels, ids, stop records and prompts) with those
    objects renumbered above every id in use, and ``{old id: new id}`` (empty
    when nothing was taken).
    """
    wanted = [int(i) for i in new_ids if i in result.object_ids]
    taken = sorted(_ids_in(target, wanted)) if wanted else []
    if not taken:
        return result, {}
    top = max(label_max(target), *result.object_ids)
    renamed = {old: top + 1 + k for k, old in enumerate(taken)}
    if isinstance(result.labels, LabelPlanes):
        labels = result.labels.relabel(renamed)
    else:
        labels = np.array(result.labels)
        for old, new in renamed.items():
            labels[result.labels == old] = new
    ids = tuple(renamed.get(i, i) for i in result.object_ids)
    stopped = {renamed.get(i, i): s for i, s in result.stopped.items()}
    prompts = [replace(p, object=renamed.get(p.object, p.object)) for p in result.prompts]
    return replace(result, labels=labels, object_ids=ids, stopped=stopped, prompts=prompts), renamed


def _ids_in(target, ids: Iterable[int]) -> set[int]:
    """Which of ``ids`` the label volume ``target`` holds (read one slice in use at a time)."""
    left, found = set(ids), set()
    for index in planes_in_use(target):
        plane = np.asarray(target[index])
        found.update(i for i in left if (plane == i).any())
        left -= found
        if not left:
            break
    return found


def _write_plane(target, index: int, old: np.ndarray, new: np.ndarray) -> SliceChange | None:
    """Write plane ``new`` over ``old`` on slice ``index`` of ``target``; only the box of what changed is written.

    Writing only that box leaves the rest of the slice untouched (memory a
    fresh, all-0 volume has not used yet stays unused).  Returns the change.
    """
    change = SliceChange.between((int(index),), old, new)
    if change is not None:
        top, left, bottom, right = change.box
        target[int(index), top:bottom, left:right] = new[top:bottom, left:right]
    return change


def write_new_labels(target: np.ndarray, result: PropagationResult,
                     on_slice: Callable[[int], None] | None = None) -> PropagationUndo:
    """Copy the result into ``target`` (N, H, W) where ``target`` is 0; returns the undo record."""
    if tuple(np.shape(target)) != tuple(result.labels.shape):
        raise PromptError(f"the labels layer has shape {np.shape(target)} but the propagation gave "
                          f"{result.labels.shape}; pick the labels layer of this image stack")
    info = np.iinfo(target.dtype) if np.issubdtype(target.dtype, np.integer) else None
    if info is None or (result.object_ids and max(result.object_ids) > info.max):
        raise PromptError(f"labels of dtype {target.dtype} cannot hold object id {max(result.object_ids)}; "
                          "use an integer labels layer (e.g. int32)")
    record = PropagationUndo()
    for index in np.flatnonzero(result.tracked):
        new = np.asarray(result.labels[index])
        old = np.asarray(target[index])
        change = _write_plane(target, index, old, np.where((new > 0) & (old == 0), new, old).astype(target.dtype))
        if change is None:
            continue
        record.change.slices.append(change)
        if on_slice is not None:
            on_slice(int(index))
    return record


def replace_objects(target: np.ndarray, result: PropagationResult, objects: Iterable[int]) -> PropagationUndo:
    """A correction's result into ``target``: on each slice it tracked, ``objects`` get their new masks.

    A corrected object's old pixels there go back to 0 and its new mask is
    written where the target is 0 or already that object; every other
    object's pixels stay as they are.  Returns the undo record.
    """
    objects = np.asarray(sorted(set(objects)), dtype=np.int64)
    if tuple(np.shape(target)) != tuple(result.labels.shape):
        raise PromptError(f"the labels layer has shape {np.shape(target)} but the propagation gave "
                          f"{result.labels.shape}; pick the labels layer of this image stack")
    record = PropagationUndo()
    for index in np.flatnonzero(result.tracked):
        old = np.asarray(target[index])
        new = np.asarray(result.labels[index])
        mine = np.isin(new, objects)
        free = (old == 0) | np.isin(old, objects)
        want = np.where(mine & free, new, np.where(np.isin(old, objects), 0, old)).astype(old.dtype)
        change = _write_plane(target, index, old, want)
        if change is not None:
            record.change.slices.append(change)
    return record


def propagate_into_labels(model, stack, prompts: Iterable[FramePrompt], target: np.ndarray, *,
                          direction: str = "both", start: int | None = None, stop: int | None = None,
                          refine: bool = True, stop_after: int | None = None, stop_threshold: float = 0.0,
                          contrast_limits: Sequence[float] | None = None, gamma: float = 1.0,
                          rgb: bool | None = None, key=None, progress: jobs.Progress | None = None,
                          cancel: jobs.Cancel | None = None,
                          on_frame: Callable[[int, np.ndarray], None] | None = None,
                          ) -> tuple[PropagationResult, PropagationUndo]:
    """Propagate ``prompts`` through ``stack`` and add the objects to ``target`` without overwriting.

    ``target`` (N, H, W) integer labels is written only after the whole run
    (a cancelled run leaves it untouched), and only where it is 0.  Returns
    the engine's result and the record that undoes the whole propagation.
    See :meth:`napari_rpsam2.model.RPSAM2.propagate` for the other arguments.
    """
    if np.ndim(target) != 3 or tuple(np.shape(target)[:1]) != (np.shape(stack)[0],):
        raise PromptError(f"the labels layer has shape {np.shape(target)}; it must be (N, H, W) with one "
                          f"slice per image slice ({np.shape(stack)[0]})")
    options = PropagationOptions(direction, start, stop, refine, stop_after, stop_threshold)
    result = propagate_stack(model, stack, prompts, options, contrast_limits=contrast_limits, gamma=gamma,
                             rgb=rgb, key=key, progress=progress, cancel=cancel, on_frame=on_frame)
    jobs.check(cancel, "propagation")
    return result, write_new_labels(target, result)
