"""Use case: propagate objects through a stack into a label volume, with one Undo.

Qt-free: the Propagate panel (and scripts) call :func:`propagate_into_labels`
from a worker thread.  Existing labels are never touched: only pixels that are
0 in the target receive the propagated objects.  The returned
:class:`PropagationUndo` takes a whole propagation back in one step.  A
cancelled run raises :class:`napari_rpsam2.jobs.Cancelled` before anything is
written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .. import jobs
from ..model.prompts import FramePrompt, PromptError
from ..model.propagation import PropagationResult
from .label_changes import LabelChange, SliceChange

__all__ = ["PropagationUndo", "propagate_into_labels", "renumber_taken_ids", "write_new_labels"]


@dataclass
class PropagationUndo:
    """What one propagation wrote (only where the target was 0), kept compactly.

    Attributes
    ----------
    change : LabelChange
        Per slice: the box, a bit per pixel written and the values (see :mod:`.label_changes`).
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
        """Put 0 back where this propagation wrote and the value is still its own.

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
    volume = np.asarray(target)
    taken = [i for i in new_ids if i in result.object_ids and np.any(volume == i)]
    if not taken:
        return result, {}
    top = max(int(volume.max()), *result.object_ids)
    renamed = {old: top + 1 + k for k, old in enumerate(taken)}
    labels = result.labels.copy()
    for old, new in renamed.items():
        labels[result.labels == old] = new
    ids = tuple(renamed.get(i, i) for i in result.object_ids)
    stopped = {renamed.get(i, i): s for i, s in result.stopped.items()}
    prompts = [replace(p, object=renamed.get(p.object, p.object)) for p in result.prompts]
    return replace(result, labels=labels, object_ids=ids, stopped=stopped, prompts=prompts), renamed


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
        new = result.labels[index]
        old = np.asarray(target[index])
        plane = np.where((new > 0) & (old == 0), new, old).astype(target.dtype)
        change = SliceChange.between((int(index),), old, plane)
        if change is None:
            continue
        target[index] = plane
        record.change.slices.append(change)
        if on_slice is not None:
            on_slice(int(index))
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
    result = model.propagate(stack, prompts, direction=direction, start=start, stop=stop, refine=refine,
                             stop_after=stop_after, stop_threshold=stop_threshold,
                             contrast_limits=contrast_limits, gamma=gamma, rgb=rgb, key=key,
                             progress=progress, cancel=cancel, on_frame=on_frame)
    jobs.check(cancel, "propagation")
    return result, write_new_labels(target, result)
