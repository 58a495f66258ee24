"""Segmentation metrics: Dice and the 95th-percentile Hausdorff distance (HD95).

HD95 uses ``scipy.ndimage``: object borders are the mask pixels removed by
one binary erosion (4-connected structure, pixels on the image edge count as
border), distances are exact Euclidean distance transforms from each border
pixel of one mask to the nearest border pixel of the other.  Units are
pixels (spacing 1).  Two conventions are in use and both are offered:

``"pooled"`` (default)
    The 95th percentile of the distances of both directions pooled together:
    MedPy's ``medpy.metric.binary.hd95``.
``"max-directed"``
    The larger of the two directed 95th percentiles (prediction → truth and
    truth → prediction): MONAI's ``compute_hausdorff_distance(percentile=95)``
    and DeepMind's ``surface-distance``.  Never smaller than ``"pooled"``; a
    small false blob far from the object counts fully here and may vanish
    in the 5 % tail of the pooled distances.

Percentiles interpolate linearly (``numpy.percentile``), as both libraries do.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["dice", "hd95", "image_diagonal", "HD95_CONVENTIONS", "mean_std", "UNLISTED_CLASS"]

#: Class of label ids that a given class map does not name: reported, but left out of the class average.
UNLISTED_CLASS = "unlisted"

HD95_CONVENTIONS = {
    "pooled": "95th percentile of the border-to-border distances of both directions pooled "
              "(medpy.metric.binary.hd95)",
    "max-directed": "larger of the two directed 95th percentiles of border-to-border distances "
                    "(MONAI compute_hausdorff_distance(percentile=95), DeepMind surface-distance)",
}


def image_diagonal(shape: tuple[int, ...]) -> float:
    """Length of the image diagonal in pixels (the HD95 of an empty prediction)."""
    return float(math.hypot(*shape[:2]))


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient in ``[0, 1]`` of two boolean masks (both empty → 1, one empty → 0)."""
    p = np.asarray(pred, dtype=bool)
    g = np.asarray(gt, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"masks differ in shape: {p.shape} vs {g.shape}")
    total = int(p.sum()) + int(g.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, g).sum()) / total


def _border(mask: np.ndarray) -> np.ndarray:
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), border_value=0)
    return mask & ~eroded


def hd95(pred: np.ndarray, gt: np.ndarray, convention: str = "pooled") -> float:
    """95th-percentile symmetric Hausdorff distance in pixels.

    ``convention`` is ``"pooled"`` or ``"max-directed"`` (module notes).  An
    empty prediction or an empty truth gives the image diagonal (both empty
    gives 0), whatever the convention.
    """
    if convention not in HD95_CONVENTIONS:
        raise ValueError(f"unknown HD95 convention {convention!r}; choose one of {list(HD95_CONVENTIONS)}")
    p = np.asarray(pred, dtype=bool)
    g = np.asarray(gt, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"masks differ in shape: {p.shape} vs {g.shape}")
    if not p.any() and not g.any():
        return 0.0
    if not p.any() or not g.any():
        return image_diagonal(p.shape)
    rows, cols = np.nonzero(p | g)  # every border pixel lies in the union's box: compute there only
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    bp, bg = _border(p)[box], _border(g)[box]
    to_g = ndimage.distance_transform_edt(~bg)
    to_p = ndimage.distance_transform_edt(~bp)
    if convention == "max-directed":
        return float(max(np.percentile(to_g[bp], 95), np.percentile(to_p[bg], 95)))
    return float(np.percentile(np.concatenate([to_g[bp], to_p[bg]]), 95))


def mean_std(values) -> dict:
    """``{"mean", "std"}`` of numbers (population std, ``ddof=0``), as the reports give them."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}
