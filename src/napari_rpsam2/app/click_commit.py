"""Commit planning of the click session: where a mask goes into a label image, and how to undo it.

Qt-free and napari-free; works on any array-like label image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.label_volume import label_max
from .label_changes import LabelChange

__all__ = ["CommitError", "CommitRecord", "plan_commit", "plan_undo"]


class CommitError(ValueError):
    """A mask cannot be written into the chosen Labels layer; the message says why."""


@dataclass
class CommitRecord:
    """What one commit wrote, enough to undo it exactly, in a compact form.

    Attributes
    ----------
    change : LabelChange
        The slice's box, a bit per pixel written and the values (see :mod:`.label_changes`).
    label_id : int
        The id written there (the pixels were 0 before).
    """

    change: LabelChange
    label_id: int

    @property
    def indices(self) -> tuple[np.ndarray, ...]:
        """Full-dimensional fancy indices of the pixels written (made on demand, not stored)."""
        return self.change.slices[0].pixel_indices()

    @property
    def size(self) -> int:
        """Number of pixels written."""
        return self.change.size


def plan_commit(target: np.ndarray, index: tuple[int, ...], mask: np.ndarray) -> CommitRecord:
    """Where and under which id a mask goes into a label image.

    Only pixels that are inside ``mask`` **and 0 in the target** are written,
    so other objects are never overwritten.  The id is the next free one
    (``max + 1`` over the whole layer).

    Raises
    ------
    CommitError
        Empty mask, a size mismatch, no free id left in the dtype, or no
        background pixel under the mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise CommitError("the preview is empty; click on an object first")
    spatial = tuple(target.shape[-2:])
    if spatial != mask.shape or target.ndim != len(index) + 2:
        raise CommitError(
            f"the target Labels layer has shape {tuple(target.shape)} but the image slice is "
            f"{mask.shape}; choose a Labels layer made for this image (or let the widget create one)"
        )
    label_id = label_max(target) + 1  # one stored slice at a time on a chunked volume
    if np.issubdtype(target.dtype, np.integer) and label_id > np.iinfo(target.dtype).max:
        raise CommitError(f"no free label id left in the target's dtype {target.dtype}; "
                          "convert the Labels layer to a wider integer type")
    plane = np.asarray(target[index])
    new = plane.copy()
    new[mask & (plane == 0)] = label_id
    change = LabelChange.of_planes([(tuple(index), plane, new)])
    if not change.slices:
        raise CommitError("every pixel of the preview already belongs to another object; nothing to write")
    return CommitRecord(change, label_id)


def plan_undo(target: np.ndarray, record: CommitRecord) -> tuple[np.ndarray, ...]:
    """Pixels to set back to 0 to undo ``record``.

    Only pixels that still hold the committed id are returned, so edits made
    after the commit (e.g. painting another object there) are kept.
    """
    change = record.change.slices[0]
    top, left, bottom, right = change.box
    crop = np.asarray(target[tuple(change.index) + (slice(top, bottom), slice(left, right))])
    rows, cols = np.nonzero(change.mask() & (crop == record.label_id))
    lead = tuple(np.full(rows.size, i, dtype=np.intp) for i in change.index)
    return lead + (rows + top, cols + left)
