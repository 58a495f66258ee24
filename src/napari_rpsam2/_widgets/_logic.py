"""Qt-free helpers behind the dock widgets: slicing layers, prompts, commit / undo.

Nothing here imports Qt or napari, so it is tested without a viewer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CommitError",
    "CommitRecord",
    "plan_commit",
    "plan_undo",
    "prompts_on_slice",
    "slice_index",
    "vectors_from",
    "POSITIVE",
    "NEGATIVE",
]

POSITIVE = "positive"
NEGATIVE = "negative"


class CommitError(ValueError):
    """A mask cannot be written into the chosen Labels layer; the message says why."""


@dataclass
class CommitRecord:
    """What one commit wrote, enough to undo it exactly.

    Attributes
    ----------
    indices : tuple of ndarray
        Full-dimensional fancy indices of the pixels written.
    label_id : int
        The id written there (the pixels were 0 before).
    """

    indices: tuple[np.ndarray, ...]
    label_id: int

    @property
    def size(self) -> int:
        """Number of pixels written."""
        return int(self.indices[0].size) if self.indices else 0


def slice_index(point_data: np.ndarray, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Integer index of the leading (non-displayed) axes for a data-space point.

    Parameters
    ----------
    point_data : array (ndim,)
        The viewer's current point mapped into the layer's data coordinates.
    shape : tuple of int
        Spatial shape of the layer (without an RGB channel axis).
    """
    lead = np.asarray(point_data, dtype=float)[: len(shape) - 2]
    return tuple(int(np.clip(np.round(v), 0, n - 1)) for v, n in zip(lead, shape[:-2]))


def prompts_on_slice(data: np.ndarray, labels: np.ndarray, index: tuple[int, ...]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clicks of one slice from a Points layer's data.

    Returns
    -------
    rows : ndarray (K,) int
        Which points of the layer belong to the slice.
    points : ndarray (K, 2) float
        Their ``(row, col)``.
    clicks : ndarray (K,) int
        1 positive, 0 negative.
    """
    data = np.asarray(data, dtype=float).reshape(-1, 2 + len(index)) if len(data) else np.zeros((0, 2 + len(index)))
    keep = np.ones(len(data), dtype=bool)
    for axis, i in enumerate(index):
        keep &= np.round(data[:, axis]) == i
    rows = np.flatnonzero(keep)
    clicks = np.array([0 if str(v) == NEGATIVE else 1 for v in np.asarray(labels)[rows]], dtype=np.int64)
    return rows, data[rows, len(index):], clicks


def vectors_from(clicks: np.ndarray, refined: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """Napari Vectors data ``(K, 2, ndim)``: arrows from each click to its refined point."""
    clicks = np.asarray(clicks, dtype=float).reshape(-1, 2)
    refined = np.asarray(refined, dtype=float).reshape(-1, 2)
    lead = np.broadcast_to(np.asarray(index, dtype=float), (len(clicks), len(index)))
    start = np.concatenate([lead, clicks], axis=1)
    direction = np.concatenate([np.zeros_like(lead), refined - clicks], axis=1)
    return np.stack([start, direction], axis=1)


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
    current = np.asarray(target.max()) if target.size else np.asarray(0)
    label_id = int(current) + 1
    if np.issubdtype(target.dtype, np.integer) and label_id > np.iinfo(target.dtype).max:
        raise CommitError(f"no free label id left in the target's dtype {target.dtype}; "
                          "convert the Labels layer to a wider integer type")
    plane = np.asarray(target[index])
    rows, cols = np.nonzero(mask & (plane == 0))
    if rows.size == 0:
        raise CommitError("every pixel of the preview already belongs to another object; nothing to write")
    lead = tuple(np.full(rows.size, i, dtype=np.intp) for i in index)
    return CommitRecord(lead + (rows, cols), label_id)


def plan_undo(target: np.ndarray, record: CommitRecord) -> tuple[np.ndarray, ...]:
    """Pixels to set back to 0 to undo ``record``.

    Only pixels that still hold the committed id are returned, so edits made
    after the commit (e.g. painting another object there) are kept.
    """
    values = np.asarray(target[record.indices])
    still = values == record.label_id
    return tuple(ix[still] for ix in record.indices)
