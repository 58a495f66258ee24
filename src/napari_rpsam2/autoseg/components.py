"""Connected components of the generator's class map and one box per component."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .generator import SlicePrediction

__all__ = ["Component", "components", "mask_box", "interior_point"]


@dataclass
class Component:
    """One connected region of one class on one slice.

    Attributes
    ----------
    class_index : int
        1-based class.
    mask : ndarray (H, W) bool
    box : ndarray (4,) float
        ``(top, left, bottom, right)`` pixel centres of the region's extent.
    score : float
        Mean class probability inside the region.
    """

    class_index: int
    mask: np.ndarray
    box: np.ndarray
    score: float

    @property
    def area(self) -> int:
        """Pixels in the region."""
        return int(self.mask.sum())


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """``(top, left, bottom, right)`` of a mask's pixels, or ``None`` for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1], cols[-1]], dtype=np.float64)


def interior_point(mask: np.ndarray) -> np.ndarray:
    """The ``(row, col)`` pixel deepest inside ``mask`` (largest distance to its border)."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([float(r), float(c)])


def components(prediction: SlicePrediction, *, min_area: int = 16,
               classes: list[int] | None = None) -> list[Component]:
    """Connected regions of the arg-max class map, largest first within each class.

    Parameters
    ----------
    prediction : SlicePrediction
    min_area : int
        Regions smaller than this many pixels are dropped (speckle).
    classes : list of int, optional
        1-based classes to keep (default all).
    """
    from scipy import ndimage

    cmap = prediction.class_map()
    out: list[Component] = []
    for k in classes or range(1, len(prediction.classes) + 1):
        regions, n = ndimage.label(cmap == k)
        if n == 0:
            continue
        areas = np.bincount(regions.ravel(), minlength=n + 1)
        for rid in np.argsort(-areas[1:], kind="stable") + 1:
            if areas[rid] < min_area:
                break
            mask = regions == rid
            out.append(Component(int(k), mask, mask_box(mask), float(prediction.probabilities[k][mask].mean())))
    return out
