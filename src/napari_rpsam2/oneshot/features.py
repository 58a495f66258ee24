"""Image features on SAM2's G×G grid: reference prototypes and target similarity maps.

SAM2's encoder works on a square resize of every image (anisotropic; 1024²,
giving G = 64, unless the backbone was built smaller), so grid cell ``(i, j)``
covers rows ``[i·H/G, (i+1)·H/G)`` and columns ``[j·W/G, (j+1)·W/G)`` of an
``H × W`` slice; the functions take G from the arrays they are given.  :class:`ImageEmbedding`
holds SAM2's lowest-resolution features with its ``no_mem_embed`` added (the
decoder wants them so); for similarity we subtract it again, so the features
compared are the encoder's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..model.embedding import ImageEmbedding

__all__ = ["ReferenceFeatures", "feature_grid", "mask_to_grid", "reference_features", "similarity",
           "grid_cell_centres", "cell_to_pixel", "upsample_map"]

GRID = 64
"""G at SAM2's 1024 input (the default of the helpers that cannot see a grid)."""


def feature_grid(backbone, embedding: ImageEmbedding, normalise: bool = True) -> torch.Tensor:
    """L2-normalised encoder features of one slice, shape (64, 64, C), float32 on CPU.

    ``backbone`` is the :class:`~napari_rpsam2.model.SAM2Backbone`; its
    ``no_mem_embed`` is subtracted when the encoder added it.  With
    ``normalise=False`` the features keep their length.
    """
    feats = embedding.image_embed[0].detach().float()
    sam = backbone.model
    if getattr(sam, "directly_add_no_mem_embed", False):
        feats = feats - sam.no_mem_embed.detach().float().reshape(-1, 1, 1)
    feats = feats.permute(1, 2, 0).cpu()
    return F.normalize(feats, dim=-1) if normalise else feats


def mask_to_grid(mask: np.ndarray, grid: int = GRID) -> np.ndarray:
    """Share of each grid cell covered by ``mask`` (H, W) → (grid, grid) float32 in [0, 1]."""
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
    return F.adaptive_avg_pool2d(m, (grid, grid))[0, 0].numpy()


def _cells(cover: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean cells at least ``threshold`` covered; the most covered cells when none is."""
    cells = cover >= threshold
    if not cells.any() and cover.max() > 0:
        cells = cover >= cover.max() - 1e-6
    return cells


@dataclass
class ReferenceFeatures:
    """What one reference object gives every target: features of its cells.

    Attributes
    ----------
    foreground : tensor (N, C)
        Normalised features of the grid cells mostly inside the object.
    background : tensor (M, C)
        Normalised features of the cells entirely outside it.
    prototype : tensor (C,)
        Normalised mean of ``foreground`` (PerSAM's target embedding).
    cells : ndarray (64, 64) bool
        Which cells count as foreground.
    embedding : tensor (C,) or None
        Mean of the foreground cells' features *before* normalisation (the
        target embedding PerSAM adds to the decoder's tokens).
    """

    foreground: torch.Tensor
    background: torch.Tensor
    prototype: torch.Tensor
    cells: np.ndarray
    embedding: torch.Tensor | None = None


def reference_features(grid_feats: torch.Tensor, mask: np.ndarray, threshold: float = 0.5,
                       raw: torch.Tensor | None = None) -> ReferenceFeatures:
    """Foreground/background features of one reference object.

    Parameters
    ----------
    grid_feats : tensor (64, 64, C)
        From :func:`feature_grid`.
    mask : ndarray (H, W) bool
        The object on the reference slice (must not be empty).
    threshold : float
        Share of a cell the mask must cover for the cell to be foreground
        (small objects fall back to their most covered cells).
    raw : tensor (64, 64, C), optional
        The features before normalisation (gives ``embedding``).
    """
    if not np.any(mask):
        raise ValueError("the reference object is empty: paint it on the reference slice first")
    cover = mask_to_grid(mask, grid_feats.shape[0])
    cells = _cells(cover, threshold)
    fg = grid_feats[torch.as_tensor(cells)]
    bg = grid_feats[torch.as_tensor(cover == 0)]
    if bg.shape[0] == 0:
        bg = grid_feats[torch.as_tensor(~cells)]
    embedding = None if raw is None else raw[torch.as_tensor(cells)].mean(0)
    return ReferenceFeatures(fg, bg, F.normalize(fg.mean(0), dim=0), cells, embedding)


def similarity(grid_feats: torch.Tensor, vectors: torch.Tensor) -> np.ndarray:
    """Cosine similarity of every cell with each vector: (K, C) → (K, 64, 64) float32."""
    v = F.normalize(torch.as_tensor(vectors, dtype=grid_feats.dtype).reshape(-1, grid_feats.shape[-1]), dim=-1)
    return torch.einsum("hwc,kc->khw", grid_feats, v).numpy()


def grid_cell_centres(image_hw: tuple[int, int], grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ``row`` and ``col`` of the centre of each grid row / column."""
    h, w = image_hw
    return (np.arange(grid) + 0.5) * h / grid - 0.5, (np.arange(grid) + 0.5) * w / grid - 0.5


def cell_to_pixel(flat_index: int, image_hw: tuple[int, int], grid: int = GRID) -> tuple[float, float]:
    """``(row, col)`` pixel of the centre of grid cell ``flat_index`` (row-major)."""
    rows, cols = grid_cell_centres(image_hw, grid)
    i, j = divmod(int(flat_index), grid)
    return float(rows[i]), float(cols[j])


def upsample_map(values: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a (64, 64) map to the slice size (H, W)."""
    t = torch.as_tensor(np.asarray(values, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(image_hw), mode="bilinear", align_corners=False)[0, 0].numpy()
