"""Grid Dice: how good SAM2's mask is from every grid point inside an object.

The per-point Dice map is both the grid-sensitivity heatmap and, through
:mod:`napari_rpsam2.training.candidates`, the training target (the ε-set of
the best points).

Grid stride
-----------
Unless given, the stride is the whole number of pixels, ``floor`` or ``ceil``
of ``sqrt(area / 144)``, whose grid holds the number of points inside the
object closest to 144 (12×12; closest by ratio).  Since a stride is a whole
number of pixels, that is 72 to 288 points for objects of 144 to ~900 pixels
(stride 1 or 2), within about ±35 % of 144 for larger ones (stride 3 and up),
and one point per pixel for an object under 144 pixels.  The grid is centred
on the object's bounding box and only points inside the object are kept; an
object that no grid point hits gets its innermost pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..jobs import Cancelled
from ..model.backbone import logits_to_image
from ..model.embedding import ImageEmbedding

__all__ = ["GridDice", "default_stride", "grid_points", "grid_dice", "mask_dice_batch"]

TARGET_POINTS = 144


@dataclass
class GridDice:
    """Dice of SAM2's mask from each grid point of one object.

    Attributes
    ----------
    points : ndarray (K, 2) float
        Grid points ``(row, col)`` in image pixels (all inside the object).
    dice : ndarray (K,) float
        Dice (0..1) of the mask from a single click at each point.
    stride : int
        Grid spacing in pixels.
    image_hw : (int, int)
        Size of the image.
    """

    points: np.ndarray
    dice: np.ndarray
    stride: int
    image_hw: tuple[int, int]

    def candidates(self, epsilon: float = 0.005) -> np.ndarray:
        """Points whose Dice is within ``epsilon`` (absolute) of the best, (M, 2) row/col."""
        if self.dice.size == 0:
            return np.zeros((0, 2))
        return self.points[self.dice >= self.dice.max() - epsilon]

    def to_map(self) -> np.ndarray:
        """``(H, W)`` float32: each point's Dice painted on its grid cell, NaN elsewhere."""
        h, w = self.image_hw
        out = np.full((h, w), np.nan, np.float32)
        half = self.stride / 2.0
        for (r, c), d in zip(self.points, self.dice):
            r0, r1 = max(0, int(math.floor(r - half + 0.5))), min(h, int(math.floor(r + half + 0.5)))
            c0, c1 = max(0, int(math.floor(c - half + 0.5))), min(w, int(math.floor(c + half + 0.5)))
            out[r0:max(r1, r0 + 1), c0:max(c1, c0 + 1)] = d
        return out


def default_stride(mask: np.ndarray) -> int:
    """Grid stride giving about 144 points inside ``mask`` (see module notes)."""
    mask = np.asarray(mask, dtype=bool)
    ideal = math.sqrt(int(np.count_nonzero(mask)) / TARGET_POINTS)
    low, high = max(1, int(math.floor(ideal))), max(1, int(math.ceil(ideal)))
    if low == high or not mask.any():
        return low
    counts = {s: len(grid_points(mask, s)) for s in (low, high)}
    return min(counts, key=lambda s: (abs(math.log(counts[s] / TARGET_POINTS)), s))


def grid_points(mask: np.ndarray, stride: int | None = None) -> np.ndarray:
    """Regular grid points ``(row, col)`` inside ``mask``, (K, 2) float64.

    Raises ``ValueError`` for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the object mask is empty; there is nothing to put a grid on")
    stride = default_stride(mask) if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"grid stride must be at least 1 pixel, got {stride}")
    rows, cols = np.nonzero(mask)
    axes = []
    for lo, hi in ((rows.min(), rows.max()), (cols.min(), cols.max())):
        extent = int(hi - lo)
        start = int(lo) + (extent % stride) // 2
        axes.append(np.arange(start, int(hi) + 1, stride))
    rr, cc = np.meshgrid(*axes, indexing="ij")
    keep = mask[rr, cc]
    pts = np.stack([rr[keep], cc[keep]], axis=-1).astype(np.float64)
    if len(pts) == 0:
        from scipy.ndimage import distance_transform_edt

        inner = np.unravel_index(int(np.argmax(distance_transform_edt(mask))), mask.shape)
        pts = np.asarray([inner], dtype=np.float64)
    return pts


def mask_dice_batch(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice of boolean masks ``pred`` (B, H, W) against one ``target`` (H, W); empty-empty is 1."""
    p = pred.flatten(1).float()
    t = target.flatten().float()
    inter = p @ t
    total = p.sum(1) + t.sum()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1e-9), torch.ones_like(total))


def grid_dice(
    model,
    embedding: ImageEmbedding,
    mask: np.ndarray,
    *,
    stride: int | None = None,
    refine: bool = False,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> GridDice:
    """Segment from every grid point of ``mask`` and score each mask with Dice.

    Parameters
    ----------
    model : RPSAM2
        Its frozen backbone segments (and its shift block refines when ``refine``).
    embedding : ImageEmbedding
        The image's embedding.
    mask : ndarray (H, W) bool
        The object.
    stride : int, optional
        Grid spacing in pixels; default from :func:`default_stride`.
    refine : bool
        Move each grid click with the shift block first (RP-SAM2 heatmap).
    chunk_size : int, optional
        Clicks decoded at once (default: fastest for the device); masks of one
        chunk are scored then dropped.
    progress : callable(done, total), optional
    cancel : callable() -> bool, optional
        Checked between chunks; raises :class:`Cancelled`.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(embedding.image_hw):
        raise ValueError(f"mask shape {mask.shape} does not match the image {tuple(embedding.image_hw)}")
    stride = default_stride(mask) if stride is None else int(stride)
    pts = grid_points(mask, stride)
    dice = np.empty(len(pts), np.float64)
    target = torch.as_tensor(mask, device=model.device)
    for sl, _, logits, _ in model.iter_single_clicks(embedding, pts, refine=refine, chunk_size=chunk_size):
        if cancel is not None and cancel():
            raise Cancelled("grid Dice was cancelled")
        with torch.inference_mode():
            pred = logits_to_image(logits, embedding.image_hw) > 0
            dice[sl] = mask_dice_batch(pred, target).cpu().numpy()
        if progress is not None:
            progress(sl.stop, len(pts))
    return GridDice(pts, dice, stride, tuple(embedding.image_hw))
