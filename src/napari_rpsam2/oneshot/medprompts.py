"""Med-PerSAM's sparse prompts from a mask prompt: morphology, subregions and the organ's bilaterality.

Positive clicks come from the mask eroded by a disk of radius ``kernel``;
negative clicks from the ring between its dilation and its erosion ("hard
negatives").  Each candidate region is split into equal runs of pixels in
raster order and each run gives one click: its most prototype-similar pixel
(positive) or its least similar one (negative).  For a bilateral organ (two
lungs, two rows of teeth) half of the clicks come from each side of the
mask's centre column, as the paper places them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["ORGAN_TYPES", "PROMPT_COUNTS", "candidate_regions", "subregion_prompts", "default_kernel"]

ORGAN_TYPES = ("single", "bilateral")
PROMPT_COUNTS = {"single": 5, "bilateral": 10}  # the paper's positive (and negative) clicks per organ type


def default_kernel(mask: np.ndarray) -> int:
    """15 % of the mask's equivalent-disk radius, at least one pixel (this project's default)."""
    return max(1, int(round(0.15 * np.sqrt(np.count_nonzero(mask) / np.pi))))


def candidate_regions(mask: np.ndarray, radius: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Erosion of ``mask`` (positive region) and the dilation-minus-erosion ring (negative region).

    ``radius`` is the disk kernel's radius in pixels (``None``:
    :func:`default_kernel`); a mask too thin to survive the erosion is its
    own positive region.
    """
    mask = np.asarray(mask, bool)
    if radius is None:
        radius = default_kernel(mask)
    eroded = ndimage.distance_transform_edt(mask) > radius
    if not eroded.any():
        eroded = mask.copy()
    dilated = ndimage.distance_transform_edt(~mask) <= radius
    return eroded, dilated & ~eroded


def _pick(region: np.ndarray, sim: np.ndarray, count: int, highest: bool) -> list[tuple[int, int]]:
    """Split the region's pixels (raster order) into ``count`` equal runs; best pixel of each."""
    flat = np.flatnonzero(region)
    if flat.size == 0 or count < 1:
        return []
    values = sim.ravel()
    picks = []
    for run in np.array_split(flat, min(count, flat.size)):
        best = run[np.argmax(values[run])] if highest else run[np.argmin(values[run])]
        picks.append(divmod(int(best), region.shape[1]))
    return picks


def _pick_sides(region: np.ndarray, sim: np.ndarray, count: int, highest: bool,
                centre: float | None) -> list[tuple[int, int]]:
    """:func:`_pick` on the whole region, or half of ``count`` on each side of column ``centre``."""
    if centre is None:
        return _pick(region, sim, count, highest)
    cols = np.arange(region.shape[1])[None, :]
    left, right = region & (cols < centre), region & (cols >= centre)
    return _pick(left, sim, count - count // 2, highest) + _pick(right, sim, count // 2, highest)


def subregion_prompts(mask: np.ndarray, sim: np.ndarray, positives: int = 5, negatives: int = 5,
                      radius: int | None = None, bilateral: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Clicks ``(row, col)`` and labels from a mask prompt and a full-size similarity map."""
    inner, ring = candidate_regions(mask, radius)
    centre = None
    if bilateral and np.any(mask):
        centre = float(np.nonzero(mask)[1].mean())
    pos = _pick_sides(inner, sim, positives, True, centre)
    neg = _pick_sides(ring, sim, negatives, False, centre)
    points = np.array(pos + neg, dtype=np.float64).reshape(-1, 2)
    return points, np.array([1] * len(pos) + [0] * len(neg))
