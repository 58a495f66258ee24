"""Qt-free geometry helpers of the click dock: slice index of a point, click-shift arrows."""

from __future__ import annotations

import numpy as np

__all__ = ["slice_index", "vectors_from", "outward_order", "POSITIVE", "NEGATIVE"]

POSITIVE = "positive"
NEGATIVE = "negative"


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


def vectors_from(clicks: np.ndarray, refined: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """Napari Vectors data ``(K, 2, ndim)``: arrows from each click to its refined point."""
    clicks = np.asarray(clicks, dtype=float).reshape(-1, 2)
    refined = np.asarray(refined, dtype=float).reshape(-1, 2)
    lead = np.broadcast_to(np.asarray(index, dtype=float), (len(clicks), len(index)))
    start = np.concatenate([lead, clicks], axis=1)
    direction = np.concatenate([np.zeros_like(lead), refined - clicks], axis=1)
    return np.stack([start, direction], axis=1)




def outward_order(start: int, n: int) -> list[int]:
    """Slice indices ``0..n-1`` nearest to ``start`` first: start, start+1, start-1, start+2, …"""
    order = [start]
    for step in range(1, n):
        order += [i for i in (start + step, start - step) if 0 <= i < n]
    return order
