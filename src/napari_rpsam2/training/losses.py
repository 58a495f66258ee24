"""The compound loss ``L = α·L_dice + β·L_dist + γ·L_out``.

All point coordinates are ``(x, y)`` in the normalized frame ``[0, 1]²``
(``x = (col + 0.5) / W``, ``0`` and ``1`` the outer pixel edges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["soft_dice_loss", "distance_loss", "ObjectShape", "object_shape", "outside_distance",
           "outside_loss", "compound_loss", "LossTerms", "MASK_FRAME"]

MASK_FRAME = 256  # SAM2's low-res mask size: L_out distances are in 1/256 of an axis


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss, one value per mask, (B,).

    ``1 - (2·Σ p·t + s) / (Σ p + Σ t + s)`` with ``p = sigmoid(logits)``.

    Parameters
    ----------
    logits : tensor (B, H, W)
        Mask logits.
    target : tensor (H, W) or (B, H, W)
        Object mask in ``[0, 1]`` (soft values allowed).
    smooth : float
        Added to numerator and denominator (keeps empty masks finite).
    """
    p = torch.sigmoid(logits).flatten(1)
    t = target.to(p.dtype).expand_as(logits).flatten(1)
    return 1.0 - (2.0 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)


def distance_loss(points: torch.Tensor, candidates: torch.Tensor, theta: float = 15.0) -> torch.Tensor:
    """Exponential distance to the nearest candidate, one value per point, (B,).

    ``min_g ½[exp(θ|x'−x_g|) + exp(θ|y'−y_g|) − 2]``; zero on a candidate.

    Parameters
    ----------
    points : tensor (B, 2)
        Refined clicks ``P'``.
    candidates : tensor (M, 2)
        The candidate set ``G`` of the clicks' object (M ≥ 1).
    theta : float
        Sharpness θ.
    """
    if candidates.shape[0] == 0:
        raise ValueError("the candidate set is empty")
    diff = (points[:, None, :] - candidates[None].to(points.dtype)).abs()
    per_pair = 0.5 * (torch.exp(theta * diff).sum(-1) - 2.0)
    return per_pair.min(dim=1).values


@dataclass
class ObjectShape:
    """One object at the resolution of its image, as :func:`outside_distance` needs it.

    Attributes
    ----------
    image_hw : (int, int)
        Size of the image.
    origin : (int, int)
        Top-left pixel ``(row, col)`` of the object's bounding box.
    box : tensor (h, w) bool
        The object mask cropped to its bounding box.
    border : tensor (N, 2) float
        ``(row, col)`` of the object's border pixels (those with a background
        4-neighbour or on the image edge): the nearest object point of any
        outside point lies on one of their squares.
    """

    image_hw: tuple[int, int]
    origin: tuple[int, int]
    box: torch.Tensor
    border: torch.Tensor

    def to(self, device: torch.device | str) -> "ObjectShape":
        """The same shape on ``device``."""
        return ObjectShape(self.image_hw, self.origin, self.box.to(device), self.border.to(device))


def object_shape(mask: np.ndarray, device: torch.device | str = "cpu") -> ObjectShape:
    """:class:`ObjectShape` of a full-resolution boolean mask (at least one pixel set)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("the object mask is empty")
    r0, c0 = int(rows.min()), int(cols.min())
    box = mask[r0:int(rows.max()) + 1, c0:int(cols.max()) + 1]
    inner = ndimage.binary_erosion(box, structure=ndimage.generate_binary_structure(2, 1), border_value=0)
    border = np.argwhere(box & ~inner) + np.array([r0, c0])
    return ObjectShape(tuple(int(s) for s in mask.shape[:2]), (r0, c0), torch.as_tensor(box, device=device),
                       torch.as_tensor(border, dtype=torch.float32, device=device))


def _inside(points: torch.Tensor, shape: ObjectShape) -> torch.Tensor:
    """Whether each point lies on an object pixel (no gradient), (B,) bool."""
    h, w = shape.image_hw
    col = torch.clamp(torch.floor(points[:, 0].detach() * w), 0, w - 1).long() - shape.origin[1]
    row = torch.clamp(torch.floor(points[:, 1].detach() * h), 0, h - 1).long() - shape.origin[0]
    bh, bw = shape.box.shape
    hit = (row >= 0) & (row < bh) & (col >= 0) & (col < bw)
    out = torch.zeros_like(hit)
    out[hit] = shape.box[row[hit], col[hit]]
    return out


def outside_distance(points: torch.Tensor, shape: ObjectShape) -> torch.Tensor:
    """Distance from each point to the object, 0 on it, (B,), in units of 1/256 of an axis.

    The object is the union of its pixels' squares at full resolution (pixel
    ``(r, c)`` covers ``x ∈ [c/W, (c+1)/W]``, ``y ∈ [r/H, (r+1)/H]``), so any
    object, however small, has a well-defined outside.  Distances are
    measured in SAM2's 256 × 256 mask frame (``Δx·256``, ``Δy·256``), the
    frame of the Dice term.  Differentiable outside the object; zero value
    and zero gradient on it.
    """
    h, w = shape.image_hw
    u = points[:, 0:1] * w  # continuous pixel coordinates, pixel c covers [c, c+1]
    v = points[:, 1:2] * h
    rows, cols = shape.border[:, 0].to(points.dtype), shape.border[:, 1].to(points.dtype)
    dx = (F.relu(cols - u) + F.relu(u - cols - 1.0)) * (MASK_FRAME / w)
    dy = (F.relu(rows - v) + F.relu(v - rows - 1.0)) * (MASK_FRAME / h)
    d2 = (dx * dx + dy * dy).min(dim=1).values
    positive = (d2 > 0) & ~_inside(points, shape)
    safe = torch.where(positive, d2, torch.ones_like(d2))  # sqrt has no gradient at 0
    return torch.sqrt(safe) * positive


def outside_loss(points: torch.Tensor, shape: ObjectShape, temperature: float = 2.0) -> torch.Tensor:
    """Penalty for clicks outside the object, one value per point, (B,).

    ``softplus(d/τ) − log 2`` with ``d`` the :func:`outside_distance` and
    ``τ = temperature`` (same units).  This is the binary cross-entropy
    ``BCE(m̂, 1)`` of the smoothed mask ``m̂ = sigmoid(−d/τ)`` for points
    outside (``m̂ < ½``), shifted to be 0 at the border, and exactly 0 with
    zero gradient inside: a click on the object is left alone, one outside
    is pulled towards the nearest object point with a force between
    ``1/(2τ)`` and ``1/τ`` per unit of distance.
    """
    d = outside_distance(points, shape)
    return F.softplus(d / temperature) - math.log(2.0)


@dataclass
class LossTerms:
    """The compound loss and its (unweighted) terms, each averaged over clicks."""

    total: torch.Tensor
    dice: torch.Tensor
    dist: torch.Tensor
    out: torch.Tensor


def compound_loss(
    logits: torch.Tensor,
    points: torch.Tensor,
    target: torch.Tensor,
    candidates: torch.Tensor,
    shape: ObjectShape,
    *,
    alpha: float = 1.0,
    beta: float = 0.1,
    gamma: float = 1.0,
    theta: float = 15.0,
    temperature: float = 2.0,
) -> LossTerms:
    """``α·L_dice + β·L_dist + γ·L_out`` for clicks on one object, averaged over the clicks.

    ``logits`` (B, h, w) and ``target`` (h, w) must share one frame (the
    trainer uses SAM2's 256×256 low-res frame); ``points`` (B, 2) are the
    refined clicks, ``candidates`` (M, 2) the object's ε-set, normalized
    frame; ``shape`` is the object at full resolution (:func:`object_shape`).
    """
    dice = soft_dice_loss(logits, target).mean()
    dist = distance_loss(points, candidates, theta).mean()
    out = outside_loss(points, shape, temperature).mean()
    return LossTerms(alpha * dice + beta * dist + gamma * out, dice, dist, out)
