"""The compound loss ``L = α·L_dice + β·L_dist + γ·L_out`` (SPEC "Compound loss").

All point coordinates are ``(x, y)`` in the normalized frame ``[0, 1]²``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["soft_dice_loss", "distance_loss", "outside_loss", "signed_distance_map", "compound_loss",
           "LossTerms"]


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


def signed_distance_map(mask: np.ndarray) -> np.ndarray:
    """Signed distance to the object border in pixels: > 0 inside, < 0 outside, 0 on it.

    Border sits half-way between an object pixel and a background pixel
    (Euclidean distance transform from ``scipy.ndimage``).
    """
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask, dtype=bool)
    if mask.all():
        return np.full(mask.shape, float(max(mask.shape)), np.float32)
    inside = distance_transform_edt(mask) - 0.5
    outside = distance_transform_edt(~mask) - 0.5
    return np.where(mask, inside, -outside).astype(np.float32)


def sample_map(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of ``field`` (H, W) at ``points`` (B, 2) in the normalized frame, (B,).

    ``x = 0`` and ``x = 1`` are the outer pixel edges (pixel centres at
    ``(col + 0.5) / W``), which is ``grid_sample`` with ``align_corners=False``;
    outside the image the border value is used.
    """
    grid = (points.to(field.dtype) * 2.0 - 1.0).view(1, -1, 1, 2)
    out = F.grid_sample(field[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(-1)


def outside_loss(points: torch.Tensor, signed_distance: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """BCE pushing the object mask sampled at ``P'`` towards 1, one value per point, (B,).

    The mask used is the **smoothed mask** ``m = sigmoid(sd / τ)`` where ``sd``
    is the signed distance to the object border (:func:`signed_distance_map`,
    in pixels of the map) and ``τ = temperature``.  It has the same border
    as the hard mask (``m = ½`` there, ``> ½`` inside, ``< ½`` outside), but
    its gradient never vanishes: ``BCE(m, 1) = softplus(−sd/τ)``, so a click far
    outside is pulled back with a constant force ``1/τ``, and one inside is
    nudged further in.

    Parameters
    ----------
    points : tensor (B, 2)
        Refined clicks, normalized frame.
    signed_distance : tensor (H, W)
        Signed distance map of the object (any resolution; same frame).
    temperature : float
        τ in map pixels.
    """
    sd = sample_map(signed_distance, points)
    return F.softplus(-sd / temperature)


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
    signed_distance: torch.Tensor,
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
    refined clicks, ``candidates`` (M, 2) the object's ε-set, normalized frame.
    """
    dice = soft_dice_loss(logits, target).mean()
    dist = distance_loss(points, candidates, theta).mean()
    out = outside_loss(points, signed_distance, temperature).mean()
    return LossTerms(alpha * dice + beta * dist + gamma * out, dice, dist, out)
