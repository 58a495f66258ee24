"""Compact, undoable changes to a label image: per slice, a bounding box, a bit mask and run-length values.

Every write the plugin makes (a commit, a propagation, a one-shot run) keeps
one :class:`LabelChange` to undo it.  Per changed slice it stores the box
around the changed pixels, which of the box's pixels changed (one bit each)
and the values before and after as runs along those pixels (labels are
piecewise constant, so a few runs per object row).  What a record holds is
bounded by the changed region, never 8–24 bytes per pixel as fancy indices
would be.  Qt- and napari-free; works on any array-like label image.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LabelChange", "SliceChange"]


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length code of a 1D array: ``(values, lengths)``."""
    if values.size == 0:
        return values[:0].copy(), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    lengths = np.diff(np.r_[starts, values.size])
    return values[starts].copy(), lengths.astype(np.int64)


def _expand(runs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.repeat(runs[0], runs[1])


@dataclass(frozen=True)
class SliceChange:
    """What changed on one 2D slice.

    Attributes
    ----------
    index : tuple of int
        Index of the slice along the leading axes (``()`` for a 2D image).
    box : tuple of int
        ``(top, left, bottom, right)`` of the changed pixels (bottom/right exclusive).
    bits : ndarray of uint8
        ``np.packbits`` of the box's changed-pixel mask (row-major).
    before, after : tuple of ndarray
        Run-length ``(values, lengths)`` of the old and new values at the changed pixels, row-major.
    """

    index: tuple[int, ...]
    box: tuple[int, int, int, int]
    bits: np.ndarray
    before: tuple[np.ndarray, np.ndarray]
    after: tuple[np.ndarray, np.ndarray]

    @classmethod
    def between(cls, index: tuple[int, ...], old: np.ndarray, new: np.ndarray) -> SliceChange | None:
        """The change from plane ``old`` to plane ``new`` (``None`` when they are equal)."""
        changed = np.asarray(old) != np.asarray(new)
        rows, cols = np.nonzero(changed)
        if rows.size == 0:
            return None
        top, left, bottom, right = int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1
        mask = changed[top:bottom, left:right]
        return cls(tuple(int(i) for i in index), (top, left, bottom, right), np.packbits(mask, axis=None),
                   _runs(np.asarray(old)[top:bottom, left:right][mask]),
                   _runs(np.asarray(new)[top:bottom, left:right][mask]))

    @property
    def pixels(self) -> int:
        """Number of pixels changed."""
        return int(self.after[1].sum())

    @property
    def nbytes(self) -> int:
        """Bytes this record holds."""
        return int(self.bits.nbytes + sum(a.nbytes for a in (*self.before, *self.after)))

    def mask(self) -> np.ndarray:
        """(h, w) bool: the changed pixels within :attr:`box`."""
        top, left, bottom, right = self.box
        n = (bottom - top) * (right - left)
        return np.unpackbits(self.bits, count=n).astype(bool).reshape(bottom - top, right - left)

    def pixel_indices(self) -> tuple[np.ndarray, ...]:
        """Full-dimensional fancy indices of the changed pixels (made on demand, not stored)."""
        rows, cols = np.nonzero(self.mask())
        lead = tuple(np.full(rows.size, i, dtype=np.intp) for i in self.index)
        return lead + (rows + self.box[0], cols + self.box[1])

    def values(self, which: str) -> np.ndarray:
        """The ``"before"`` or ``"after"`` values at :meth:`pixel_indices`."""
        return _expand(self.before if which == "before" else self.after)

    def apply(self, target, frm: str, to: str) -> bool:
        """Set pixels that still hold their ``frm`` values to their ``to`` values; True if any changed.

        Pixels edited since (holding something else) are left alone.  Only the
        box is read and written, with basic indexing, so a chunked (zarr)
        volume is touched in that box alone.
        """
        top, left, bottom, right = self.box
        region = tuple(self.index) + (slice(top, bottom), slice(left, right))  # basic indexing: any array
        crop = np.array(target[region])
        mask = self.mask()
        current = crop[mask]
        still = current == self.values(frm)
        if not still.any():
            return False
        current[still] = self.values(to)[still]
        crop[mask] = current
        target[region] = crop
        return True


@dataclass
class LabelChange:
    """One undoable write into a label image: a :class:`SliceChange` per changed slice."""

    slices: list[SliceChange] = field(default_factory=list)

    @classmethod
    def of_planes(cls, planes: Iterable[tuple[tuple[int, ...], np.ndarray, np.ndarray]]) -> LabelChange:
        """From ``(index, old plane, new plane)`` triples."""
        changes = (SliceChange.between(index, old, new) for index, old, new in planes)
        return cls([c for c in changes if c is not None])

    @classmethod
    def of_pixels(cls, shape: tuple[int, ...], index: tuple[np.ndarray, ...], before: np.ndarray,
                  after: np.ndarray) -> LabelChange:
        """From full-dimensional fancy indices into an image of ``shape`` and the values there."""
        index = tuple(np.asarray(i, np.intp) for i in index)
        before, after = np.asarray(before), np.asarray(after)
        dtype = np.result_type(before, after)  # the planes hold the values as given: no recast afterwards
        lead = np.stack(index[:-2], axis=1) if len(index) > 2 else np.zeros((index[-1].size, 0), np.intp)
        planes = []
        for key in sorted({tuple(int(v) for v in row) for row in lead}):
            on = np.all(lead == np.asarray(key, np.intp), axis=1) if key else np.ones(index[-1].size, bool)
            old = np.zeros(shape[-2:], dtype)
            new = old.copy()
            rows, cols = index[-2][on], index[-1][on]
            old[rows, cols] = before[on]
            new[rows, cols] = after[on]
            planes.append((key, old, new))
        return cls.of_planes(planes)

    def __iter__(self) -> Iterator[SliceChange]:
        return iter(self.slices)

    @property
    def size(self) -> int:
        """Number of pixels changed."""
        return sum(s.pixels for s in self.slices)

    pixels = size

    @property
    def slice_indices(self) -> list[tuple[int, ...]]:
        """Slices changed, in order."""
        return sorted(s.index for s in self.slices)

    @property
    def nbytes(self) -> int:
        """Bytes this record holds."""
        return sum(s.nbytes for s in self.slices)

    def undo(self, target) -> list[tuple[int, ...]]:
        """Put the old values back where the new ones are still there (in place); returns the slices changed.

        Pixels the person edited since keep their value.
        """
        return [s.index for s in self.slices if s.apply(target, "after", "before")]

    def redo(self, target) -> list[tuple[int, ...]]:
        """Write the new values again where the old ones are still there (in place)."""
        return [s.index for s in self.slices if s.apply(target, "before", "after")]

