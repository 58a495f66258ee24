"""Use case "segment the stack from this slice" (Qt-free; the widget and scripts call it).

:func:`propagate_from_slice` runs a one-shot method (PerSAM, P²SAM or
Med-PerSAM) from one annotated slice, then merges the masks into a label
volume *only where it is 0*, so nothing painted before is touched.  It returns
the generated clicks as Points-layer data and a :class:`LabelEdit` whose
:meth:`~LabelEdit.undo` reverts the whole merge in one step.  All the work
happens before the merge: a cancelled run (``napari_rpsam2.jobs.Cancelled``)
leaves the labels exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import jobs
from ..oneshot import SliceResult, make_method, segment_stack
from .label_changes import LabelChange

__all__ = ["OneShotClicks", "LabelEdit", "OneShotOutcome", "propagate_from_slice", "merge_results",
           "clicks_of"]


@dataclass
class OneShotClicks:
    """Generated clicks as Points-layer data.

    Attributes
    ----------
    data : ndarray (M, 3) float
        ``(slice, row, col)`` of each click (the position SAM2 got, i.e. after refinement).
    label : ndarray (M,) int
        1 positive, 0 negative.
    object_id : ndarray (M,) int
        The object each click prompts.
    generated : ndarray (M, 2) float
        ``(row, col)`` as generated, before the shift block moved it.
    """

    data: np.ndarray
    label: np.ndarray
    object_id: np.ndarray
    generated: np.ndarray

    def properties(self) -> dict[str, np.ndarray]:
        """``properties`` for a napari Points layer."""
        return {"label": self.label, "object_id": self.object_id}


LabelEdit = LabelChange
"""One undoable merge into a label volume (a compact :class:`~.label_changes.LabelChange`)."""


@dataclass
class OneShotOutcome:
    """What one run gives: per-slice results, the clicks and the undo record.

    ``guidance(object_id, embedding)`` gives PerSAM's decoder guidance on
    another slice (for re-runs from edited clicks); ``None`` for the other methods.
    """

    results: dict[int, SliceResult]
    clicks: OneShotClicks
    edit: LabelEdit
    method: str
    warping_seconds: float | None = None
    guidance: Callable | None = None


def clicks_of(results: Mapping[int, SliceResult]) -> OneShotClicks:
    """Points-layer data of every generated click, slice by slice."""
    data, label, oid, gen = [], [], [], []
    for index in sorted(results):
        for obj in results[index].objects:
            n = len(obj.labels)
            data.append(np.column_stack([np.full(n, float(index)), np.asarray(obj.decoded_points).reshape(n, 2)]))
            label.append(np.asarray(obj.labels, int))
            oid.append(np.full(n, obj.object_id, int))
            gen.append(np.asarray(obj.points, float).reshape(n, 2))
    if not data:
        return OneShotClicks(np.zeros((0, 3)), np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2)))
    return OneShotClicks(np.concatenate(data), np.concatenate(label), np.concatenate(oid), np.concatenate(gen))


def merge_results(labels: np.ndarray, results: Mapping[int, SliceResult]) -> LabelEdit:
    """Write every mask into ``labels`` (N, H, W) where it is 0, in place; returns the undo record."""
    def planes():  # one slice at a time: a chunked volume is read slice by slice
        for index in sorted(results):
            old = np.asarray(labels[index])
            plane = results[index].label_plane(labels.shape[1:])
            yield (int(index),), old, np.where((plane != 0) & (old == 0), plane, old).astype(labels.dtype)
    edit = LabelChange.of_planes(planes())
    edit.redo(labels)
    return edit


def propagate_from_slice(model, images, reference_index: int, reference_labels: np.ndarray,
                         target_labels: np.ndarray | None, *, method: str = "persam", refine: bool = False,
                         object_ids: Sequence[int] | None = None, targets: Sequence[int] | None = None,
                         method_options: Mapping | None = None, key: Hashable | None = None,
                         rgb: bool | None = None, contrast_limits=None, gamma: float = 1.0,
                         progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None) -> OneShotOutcome:
    """Segment the stack from one annotated slice and merge the result into ``target_labels``.

    Parameters
    ----------
    model : RPSAM2
        The workspace's model (its embedding cache is used).
    images : array (N, H, W[, C])
        The stack.
    reference_index, reference_labels
        The annotated slice and its (H, W) labels (one or more object ids).
    target_labels : array (N, H, W) int, or None
        Label volume to merge into, in place, only where it is 0; ``None``: merge nothing (the caller merges
        ``results`` itself with :func:`merge_results`, e.g. into a layer in the GUI thread).
    method : str
        ``persam``, ``p2sam`` or ``medpersam``.
    refine : bool
        Move every generated positive click with the shift block first.
    targets : sequence of int, optional
        Slices to segment (default: all but the reference).
    key : hashable, optional
        Cache key of the stack (e.g. the layer id); slice ``i`` is ``(key, i)``.
    rgb, contrast_limits, gamma
        How slices are mapped for the encoder (a layer's display settings).

    Raises :class:`napari_rpsam2.jobs.Cancelled` when ``cancel()`` turns true;
    ``target_labels`` is then unchanged.
    """
    if target_labels is not None and (np.shape(target_labels)[0] != len(images)
                                      or np.shape(target_labels)[1:3] != np.shape(images[0])[:2]):
        raise ValueError(f"the label volume {np.shape(target_labels)} does not match the stack "
                         f"({len(images)} slices of {np.shape(images[0])[:2]})")
    runner = make_method(method, model, refine=refine, rgb=rgb, contrast_limits=contrast_limits, gamma=gamma,
                         **dict(method_options or {}))
    results = segment_stack(runner, images, reference_index, reference_labels, object_ids=object_ids,
                            targets=targets, key=key, progress=progress, cancel=cancel)
    jobs.check(cancel, "one-shot segmentation")
    edit = LabelChange() if target_labels is None else merge_results(target_labels, results)
    return OneShotOutcome(results, clicks_of(results), edit, method, getattr(runner, "training_seconds", None),
                          getattr(runner, "decoder_guidance", None))
