"""Candidate points for training: the ε-set of the best grid points, cached.

The grid Dice itself lives in :mod:`napari_rpsam2.evaluation.grid_dice`
(one code path for the heatmap and the trainer); this module caches its
results per (image, object, backbone, stride) and picks the candidates.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from ..evaluation.grid_dice import GridDice, default_stride, grid_dice, grid_points, mask_dice_batch
from ..jobs import Cancelled
from ..model.embedding import ImageEmbedding
from ..model.shift_block import weights_digest

__all__ = ["Cancelled", "GridDice", "CandidateCache", "default_stride", "grid_points", "grid_dice",
           "mask_dice_batch", "mask_digest"]


def mask_digest(mask: np.ndarray) -> str:
    """Short content hash of a mask (part of the cache key)."""
    arr = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    return hashlib.blake2b(arr.tobytes() + str(arr.shape).encode(), digest_size=12).hexdigest()


class CandidateCache:
    """Grid Dice results keyed by (image signature, object, backbone, stride, refine).

    The object part of the key is its id plus a hash of its mask, so an
    edited label is recomputed.  Least-recently-used entries beyond
    ``max_entries`` are dropped (a result is a few KiB).  Safe to share
    between threads (a heatmap and a training run of one viewer).
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = int(max_entries)
        self._store: OrderedDict[tuple, GridDice] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    @staticmethod
    def key(image_signature: str, object_id: int, mask: np.ndarray, backbone: str,
            stride: int | None, refine: bool) -> tuple:
        """The cache key (``stride=None`` means the default stride for this mask)."""
        stride = default_stride(mask) if stride is None else int(stride)
        return (image_signature, int(object_id), mask_digest(mask), backbone, stride, bool(refine))

    def get(self, key: tuple) -> GridDice | None:
        """Cached result or ``None``."""
        with self._lock:
            found = self._store.get(key)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._store.move_to_end(key)
            return found

    def put(self, key: tuple, value: GridDice) -> None:
        """Store a result."""
        with self._lock:
            self._store[key] = value
            self._store.move_to_end(key)
            while len(self._store) > self.max_entries:
                self._store.popitem(last=False)

    def grid_dice(self, model, embedding: ImageEmbedding, mask: np.ndarray, *, image_signature: str,
                  object_id: int, stride: int | None = None, refine: bool = False, chunk_size: int | None = None,
                  progress=None, cancel=None) -> GridDice:
        """:func:`grid_dice` through the cache."""
        backbone = model.backbone.weights_signature
        key = self.key(image_signature, object_id, mask, backbone, stride, refine)
        if refine:  # a refined heatmap also depends on the shift block's weights
            key = key + (weights_digest(model.shift_block),)
        found = self.get(key)
        if found is None:
            found = grid_dice(model, embedding, mask, stride=stride, refine=refine, chunk_size=chunk_size,
                              progress=progress, cancel=cancel)
            self.put(key, found)
        return found

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._store.clear()
