"""A label volume kept compactly, one slice at a time: the box of its objects and run-length values.

A propagation produces one label plane per slice it tracks.  Kept as a dense
``(N, H, W)`` int32 volume, each plane costs ``4·H·W`` bytes however little
it holds; :class:`LabelPlanes` keeps, per slice, the bounding box of its
nonzero pixels and the box's values as runs (labels are piecewise constant:
a few runs per object row), so a run's result costs what its outlines cost;
a plane with ragged outlines, where runs would cost more, keeps one bit per
pixel of the box per object (or one byte per pixel, whichever is less).

It reads like an array where that is cheap: ``volume[i]`` and
``volume[i, rows, cols]`` decode one plane; any other index, and
``np.asarray(volume)``, build the dense volume.  napari shows it as a Labels
layer's data (napari asks for one plane at a time).  Qt- and napari-free.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["LabelPlanes", "Plane"]


@dataclass(frozen=True)
class Plane:
    """One slice's labels: the box around its nonzero pixels and the box's values (row-major), in one of three forms.

    * runs: ``values`` with their ``lengths`` (smooth masks: a few runs per row);
    * bit planes: ``values`` are the ids and ``bits`` one packed bit per pixel
      of the box for each (a few objects with ragged outlines);
    * the box's values themselves (neither ``lengths`` nor ``bits``) in the
      smallest unsigned dtype that holds them.

    :meth:`of` picks the smallest, so a plane never takes more than one byte
    per pixel of its box for fewer than 256 objects, nor more than one bit per
    pixel per object.
    """

    box: tuple[int, int, int, int]
    values: np.ndarray
    lengths: np.ndarray | None = None
    bits: np.ndarray | None = None

    @classmethod
    def of(cls, plane: np.ndarray) -> Plane | None:
        """The compact form of a 2D label plane (``None`` when it is all 0)."""
        plane = np.asarray(plane)
        rows = np.flatnonzero(plane.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(plane.any(axis=0))
        box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        flat = np.ascontiguousarray(plane[box[0]:box[2], box[1]:box[3]]).ravel()
        starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
        ids = np.unique(flat[starts])
        ids = ids[ids != 0]
        narrow = np.min_scalar_type(int(ids.max())) if int(flat.min()) >= 0 else flat.dtype
        cost = {"runs": starts.size * (flat.dtype.itemsize + 4),
                "bits": ids.size * ((flat.size + 7) // 8) + ids.nbytes, "values": flat.size * narrow.itemsize}
        form = min(cost, key=cost.get)
        if form == "runs":
            lengths = np.diff(np.r_[starts, flat.size]).astype(np.uint32)
            return cls(box, flat[starts].copy(), lengths=lengths)
        if form == "bits":
            return cls(box, ids, bits=np.packbits(flat[None, :] == ids[:, None], axis=1))
        return cls(box, flat.astype(narrow))

    def crop(self) -> np.ndarray:
        """The values inside :attr:`box` (a new array, or a read-only view of the stored values)."""
        top, left, bottom, right = self.box
        n = (bottom - top) * (right - left)
        if self.lengths is not None:
            flat = np.repeat(self.values, self.lengths)
        elif self.bits is not None:
            flat = np.zeros(n, self.values.dtype)
            for value, bits in zip(self.values, self.bits):
                flat[np.unpackbits(bits, count=n).view(bool)] = value
        else:
            flat = self.values
        return flat.reshape(bottom - top, right - left)

    @property
    def nbytes(self) -> int:
        """Bytes this plane holds."""
        return int(sum(a.nbytes for a in (self.values, self.lengths, self.bits) if a is not None))


class LabelPlanes:
    """A ``(N, H, W)`` label volume held as one :class:`Plane` per nonzero slice.

    Parameters
    ----------
    shape : (N, H, W)
    dtype : integer dtype of the values (default int32)
    """

    def __init__(self, shape: tuple[int, int, int], dtype=np.int32) -> None:
        if len(shape) != 3:
            raise ValueError(f"a label volume is (N, H, W); got shape {tuple(shape)}")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._planes: dict[int, Plane] = {}

    ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def _index(self, index) -> int:
        i = operator.index(index)
        n = self.shape[0]
        if not -n <= i < n:
            raise IndexError(f"slice {i} is outside the volume of {n} slices")
        return i % n

    def plane(self, index: int) -> np.ndarray:
        """Slice ``index`` as a new dense (H, W) array."""
        out = np.zeros(self.shape[1:], self.dtype)
        stored = self._planes.get(self._index(index))
        if stored is not None:
            top, left, bottom, right = stored.box
            out[top:bottom, left:right] = stored.crop()
        return out

    def stored(self, index: int) -> Plane | None:
        """The compact plane of slice ``index`` (``None`` when the slice is all 0)."""
        return self._planes.get(self._index(index))

    def __getitem__(self, key):
        if isinstance(key, tuple) and key and _is_int(key[0]):
            return self.plane(key[0])[key[1:]]
        if _is_int(key):
            return self.plane(key)
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if isinstance(first, slice):  # e.g. napari with the slice axis rolled: build only the planes asked for
            picked = [self.plane(i)[rest] for i in range(*first.indices(self.shape[0]))]
            if picked:
                return np.stack(picked)
            return np.zeros((0, *np.empty(self.shape[1:], bool)[rest].shape), self.dtype)
        return np.asarray(self)[key]

    def __setitem__(self, key, plane) -> None:
        if not _is_int(key):
            raise TypeError("a LabelPlanes volume is written one whole slice at a time: volume[i] = plane")
        plane = np.asarray(plane)
        if plane.shape != self.shape[1:]:
            raise ValueError(f"slice {key} must have shape {self.shape[1:]}, got {plane.shape}")
        self.put(key, Plane.of(plane.astype(self.dtype, copy=False)))

    def put(self, index: int, plane: Plane | None) -> None:
        """Store slice ``index`` already compact (``None``: all 0)."""
        i = self._index(index)
        if plane is None:
            self._planes.pop(i, None)
            return
        top, left, bottom, right = plane.box
        if not (0 <= top < bottom <= self.shape[1] and 0 <= left < right <= self.shape[2]):
            raise ValueError(f"box {plane.box} does not fit a slice of {self.shape[1:]}")
        self._planes[i] = plane

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.zeros(self.shape, self.dtype)
        for i, stored in self._planes.items():
            top, left, bottom, right = stored.box
            out[i, top:bottom, left:right] = stored.crop()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.plane(i) for i in range(self.shape[0]))

    @property
    def indices(self) -> list[int]:
        """Slices that hold any label, in order."""
        return sorted(self._planes)

    @property
    def nbytes(self) -> int:
        """Bytes the stored planes hold."""
        return sum(p.nbytes for p in self._planes.values())

    def relabel(self, mapping: Mapping[int, int]) -> LabelPlanes:
        """A copy with the ids of ``mapping`` (``old -> new``) replaced."""
        out = LabelPlanes(self.shape, self.dtype)
        for i, stored in self._planes.items():
            values = stored.values.astype(self.dtype)  # a narrow dtype may not hold the new ids
            for old, new in mapping.items():
                values[stored.values == old] = new
            out._planes[i] = Plane(stored.box, values, stored.lengths, stored.bits)
        return out


def _is_int(key) -> bool:
    return isinstance(key, (int, np.integer)) and not isinstance(key, bool)
