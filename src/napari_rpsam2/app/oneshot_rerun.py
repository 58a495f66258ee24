"""Correcting a one-shot run: re-segment one slice from its (edited) clicks, and undo runs one at a time.

Qt-free and napari-free.  After :func:`~napari_rpsam2.app.oneshot.propagate_from_slice`
the person may move, delete or add clicks on one slice; :func:`rerun_slice`
segments that slice again from exactly those clicks, replacing what the
earlier runs wrote there and nothing else.  :class:`RunHistory` keeps one
:class:`~napari_rpsam2.app.oneshot.LabelEdit` per run or re-run, so one undo
reverts one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from ..oneshot.passes import three_passes
from .oneshot import LabelEdit

__all__ = ["RunHistory", "rerun_slice", "slice_masks"]


def slice_masks(model, image: np.ndarray, points_rc: np.ndarray, labels: np.ndarray, object_ids: np.ndarray, *,
                key: Hashable | None = None, rgb: bool | None = None, contrast_limits=None,
                gamma: float = 1.0, guidance: Callable | None = None) -> dict[int, np.ndarray]:
    """One mask per object from its clicks as given (PerSAM's three decoder passes, no shift block).

    An object without a positive click gets an empty mask: deleting every
    positive click of an object says "it is not on this slice".
    ``guidance(object_id, embedding)`` (a PerSAM run's
    :attr:`~napari_rpsam2.app.oneshot.OneShotOutcome.guidance`) adds PerSAM's
    decoder guidance, so unchanged clicks give that run's masks.
    """
    points_rc = np.asarray(points_rc, float).reshape(-1, 2)
    labels, object_ids = np.asarray(labels, int).ravel(), np.asarray(object_ids, int).ravel()
    hw = np.shape(image)[:2]
    emb = None
    masks = {}
    for oid in dict.fromkeys(object_ids.tolist()):  # first-seen order
        mine = object_ids == oid
        if not (labels[mine] == 1).any():
            masks[int(oid)] = np.zeros(hw, bool)
            continue
        if emb is None:
            emb = model.embed(image, key=key, rgb=rgb, contrast_limits=contrast_limits, gamma=gamma)
        extra = None if guidance is None else guidance(int(oid), emb)
        masks[int(oid)] = three_passes(model, emb, points_rc[mine], labels[mine], extra)[-1].mask
    return masks


def rerun_slice(labels_volume: np.ndarray, index: int, masks: dict[int, np.ndarray],
                written: np.ndarray) -> LabelEdit:
    """Replace, on slice ``index``, the pixels earlier runs wrote (``written``) by ``masks`` (in place).

    Pixels not written by a run (the person's own labels) never change: the
    new masks only go where the slice is 0 once the runs' pixels are cleared.
    Earlier objects in ``masks`` win where masks overlap.  Returns one undo record.
    """
    plane = np.asarray(labels_volume[index])
    new = plane.copy()
    new[np.asarray(written, bool)] = 0
    for oid, mask in masks.items():
        new[(new == 0) & np.asarray(mask, bool)] = oid
    edit = LabelEdit.of_planes([((int(index),), plane, new.astype(labels_volume.dtype))])
    edit.redo(labels_volume)
    return edit


@dataclass
class RunHistory:
    """The runs and re-runs on one label volume, newest last; one :meth:`undo` reverts one of them.

    Each entry keeps the caller's ``state`` from before it (e.g. the clicks
    shown then), handed back by :meth:`undo`.
    """

    edits: list[tuple[LabelEdit, object]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.edits)

    def push(self, edit: LabelEdit, state: object = None) -> None:
        """Record a run (``state``: what to restore besides the labels when it is undone)."""
        self.edits.append((edit, state))

    def undo(self, labels_volume: np.ndarray) -> object:
        """Revert the newest run in place; returns the ``state`` recorded with it."""
        if not self.edits:
            raise IndexError("nothing to undo")
        edit, state = self.edits.pop()
        edit.undo(labels_volume)
        return state

    def written(self, labels_volume: np.ndarray, index: int) -> np.ndarray:
        """(H, W) bool: pixels of slice ``index`` the recorded runs wrote and that still hold what they wrote.

        A pixel the person painted over since is theirs again.
        """
        plane = np.asarray(labels_volume[int(index)])
        out = np.zeros(plane.shape, bool)
        values = np.zeros(plane.shape, plane.dtype)
        for edit, _ in self.edits:  # oldest first: the newest value each run wrote wins
            for change in edit.slices:
                if change.index == (int(index),):
                    where, after = change.pixel_indices()[-2:], change.values("after")
                    out[where] = after != 0
                    values[where] = after
        return out & (plane == values)
