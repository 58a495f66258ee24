"""Exact mapping between napari pixel clicks and SAM2's input frames.

Conventions
-----------
* A click is ``(row, col)`` in image pixels, napari order; integer values are
  pixel centres (napari draws pixel ``i`` centred on ``i``).
* The *normalized frame* is ``(x, y)`` in ``[0, 1]²`` where ``0`` and ``1`` are
  the outer edges of the image: ``x = (col + 0.5) / W``, ``y = (row + 0.5) / H``.
  The shift block works here, so a shift of ``0.1`` is 10 % of an axis.
* SAM2 resizes every image anisotropically to ``S × S`` (``S = 1024``) and its
  prompt encoder adds ``0.5`` to every coordinate it receives.  The value to
  hand it is therefore ``x * S - 0.5`` so that the encoded position is exactly
  the pixel centre ``x * S``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "pixels_to_normalized",
    "normalized_to_pixels",
    "normalized_to_prompt",
    "normalized_bounds",
    "clamp_straight_through",
]


def pixels_to_normalized(points_rc: np.ndarray | torch.Tensor, image_hw: tuple[int, int]):
    """Map ``(row, col)`` pixel clicks to ``(x, y)`` in the normalized frame.

    Parameters
    ----------
    points_rc : array or tensor, shape (..., 2)
        Clicks in napari order.
    image_hw : (int, int)
        Height and width of the image the clicks were made on.

    Returns
    -------
    Same type as ``points_rc``, shape (..., 2), ``(x, y)`` order.
    """
    h, w = image_hw
    if isinstance(points_rc, torch.Tensor):
        x = (points_rc[..., 1] + 0.5) / w
        y = (points_rc[..., 0] + 0.5) / h
        return torch.stack([x, y], dim=-1)
    pts = np.asarray(points_rc, dtype=np.float64)
    return np.stack([(pts[..., 1] + 0.5) / w, (pts[..., 0] + 0.5) / h], axis=-1)


def normalized_to_pixels(points_xy: np.ndarray | torch.Tensor, image_hw: tuple[int, int]):
    """Inverse of :func:`pixels_to_normalized`: ``(x, y)`` to ``(row, col)``."""
    h, w = image_hw
    if isinstance(points_xy, torch.Tensor):
        row = points_xy[..., 1] * h - 0.5
        col = points_xy[..., 0] * w - 0.5
        return torch.stack([row, col], dim=-1)
    pts = np.asarray(points_xy, dtype=np.float64)
    return np.stack([pts[..., 1] * h - 0.5, pts[..., 0] * w - 0.5], axis=-1)


def normalized_to_prompt(points_xy: torch.Tensor, input_size: int) -> torch.Tensor:
    """Coordinates to give SAM2's prompt encoder (which adds 0.5 itself)."""
    return points_xy * input_size - 0.5


def normalized_bounds(image_hw: tuple[int, int]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Lowest and highest ``(x, y)`` that still fall on a pixel centre of the image."""
    h, w = image_hw
    return (0.5 / w, 0.5 / h), (1.0 - 0.5 / w, 1.0 - 0.5 / h)


def clamp_straight_through(points_xy: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Clamp points into the image while letting gradients pass unchanged.

    The forward value is clamped to the first/last pixel centre; the backward
    pass is the identity, so a point pushed against the border still learns.
    """
    lo, hi = normalized_bounds(image_hw)
    lo_t = points_xy.new_tensor(lo)
    hi_t = points_xy.new_tensor(hi)
    clamped = torch.maximum(torch.minimum(points_xy, hi_t), lo_t)
    # value: exactly ``clamped``; gradient: the identity (the added term is 0)
    return clamped.detach() + (points_xy - points_xy.detach())
