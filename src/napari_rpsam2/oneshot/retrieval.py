"""P²SAM's distribution-guided retrieval: the candidate whose features look most like the reference's.

Each candidate mask gives the features of the target cells it covers; the
earth mover's distance (exact, POT ``ot.emd2``, Euclidean cost) to the
reference foreground features ranks the candidates.  A feature set of more
than ``max_points`` cells is first pooled over square blocks of the feature
grid (block mean, weighted by the cells it holds), the block side growing
until at most ``max_points`` remain: the transport problem then stays small
whatever the mask's size, and the distance moves by at most the mean distance
of a cell to its block mean (triangle inequality).  Sets within the cap are
used cell by cell, so the distance is then exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .features import mask_to_grid

__all__ = ["Cloud", "cell_cloud", "predicted_cells", "earth_movers_distance", "retrieve", "MAX_POINTS"]

MAX_POINTS = 512


@dataclass
class Cloud:
    """Weighted feature points (weights sum to 1).

    Attributes
    ----------
    points : tensor (K, C)
    weights : ndarray (K,) float64
    pooled : int
        Side of the pooling blocks (1: every cell is its own point).
    """

    points: torch.Tensor
    weights: np.ndarray
    pooled: int = 1

    def __len__(self) -> int:
        return int(self.points.shape[0])


def predicted_cells(mask: np.ndarray, grid: int, threshold: float = 0.5) -> np.ndarray:
    """The grid cells a mask mostly covers (the most covered ones for masks smaller than a cell)."""
    cover = mask_to_grid(mask, grid)
    cells = cover >= threshold
    if not cells.any() and cover.max() > 0:
        cells = cover >= cover.max() - 1e-6
    return cells


def cell_cloud(grid: torch.Tensor, cells: np.ndarray, max_points: int = MAX_POINTS) -> Cloud:
    """The features of ``cells`` (h, w) bool of ``grid`` (h, w, C) as a cloud of at most ``max_points``."""
    count = int(np.count_nonzero(cells))
    if count == 0:
        return Cloud(grid.new_zeros((0, grid.shape[-1])), np.zeros(0))
    if count <= max_points:
        return Cloud(grid[torch.as_tensor(cells)], np.full(count, 1.0 / count))
    m = torch.as_tensor(cells, dtype=grid.dtype)[None, None]
    x = (grid.permute(2, 0, 1) * m[0])[None]
    block = max(2, int(np.ceil(np.sqrt(count / max_points))))
    while True:
        n = F.avg_pool2d(m, block, block, ceil_mode=True)[0, 0].flatten()
        if int((n > 0).sum()) <= max_points:
            break
        block += 1
    s = F.avg_pool2d(x, block, block, ceil_mode=True)[0].flatten(1).T
    keep = n > 0
    points = s[keep] / n[keep, None]
    w = n[keep].double().numpy()
    return Cloud(points, w / w.sum(), block)


def earth_movers_distance(a: Cloud | torch.Tensor, b: Cloud | torch.Tensor) -> float:
    """Exact earth mover's distance between two weighted clouds (tensors: uniform weights), Euclidean cost."""
    import ot

    a, b = (c if isinstance(c, Cloud) else Cloud(c, np.full(len(c), 1.0 / max(1, len(c)))) for c in (a, b))
    if len(a) == 0 or len(b) == 0:
        return float("inf")
    x, y = a.points.double(), b.points.double()
    cost = torch.cdist(x, y).numpy()
    return float(ot.emd2(a.weights, b.weights, cost))


def retrieve(reference: Cloud | torch.Tensor, candidates: Sequence[Cloud | torch.Tensor]) -> tuple[int, list[float]]:
    """Index of the candidate closest to ``reference`` by EMD, and all distances (an empty one never wins)."""
    dist = [earth_movers_distance(reference, c) for c in candidates]
    return int(np.argmin(dist)), dist
