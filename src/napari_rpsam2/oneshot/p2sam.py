"""P²SAM: part-aware prompts with distribution-guided retrieval, on SAM2.

The reference object's foreground features are clustered (scikit-learn
k-means++) into ``n`` parts; each part's mean feature gives one positive
click at the most similar target cell; the background features give the
negative click(s) the same way.  Every part count in ``parts`` yields a
candidate mask (three decoder passes each); the candidate whose predicted
foreground features are closest to the reference foreground features by exact
earth mover's distance (POT ``ot.emd2``, uniform weights, Euclidean cost)
wins.  Clustering depends on the reference only and runs once per reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch.nn import functional as F

from .features import cell_to_pixel, mask_to_grid, similarity
from .method import ObjectResult, OneShotMethod
from .passes import three_passes

__all__ = ["P2SAM", "part_vectors", "part_prompts", "earth_movers_distance", "retrieve", "predicted_features"]


def part_vectors(features: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Normalised mean feature of each of ``n`` k-means clusters of ``features`` (N, C) → (n', C), n' ≤ n."""
    n = max(1, min(int(n), features.shape[0]))
    if n == 1:
        return F.normalize(features.mean(0, keepdim=True), dim=-1)
    km = KMeans(n_clusters=n, init="k-means++", n_init=3, random_state=seed).fit(features.numpy())
    means = [features[torch.as_tensor(km.labels_ == k)].mean(0) for k in range(n) if (km.labels_ == k).any()]
    return F.normalize(torch.stack(means), dim=-1)


def _best_cells(sim: np.ndarray, taken: set[int], highest: bool = True) -> list[int]:
    """Per map, the best cell not already used (so two clicks never share a cell)."""
    cells = []
    for s in sim.reshape(sim.shape[0], -1):
        order = np.argsort(-s if highest else s, kind="stable")
        cell = next((int(c) for c in order if int(c) not in taken), int(order[0]))
        taken.add(cell)
        cells.append(cell)
    return cells


def part_prompts(grid: torch.Tensor, parts: torch.Tensor, background: torch.Tensor,
                 image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One positive click per part (argmax of its similarity) and one negative per background vector."""
    taken: set[int] = set()
    pos = _best_cells(similarity(grid, parts), taken)
    neg = _best_cells(similarity(grid, background), taken)
    points = np.array([cell_to_pixel(c, image_hw, grid.shape[0]) for c in pos + neg])
    return points, np.array([1] * len(pos) + [0] * len(neg))


def earth_movers_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact earth mover's distance between two point clouds (uniform weights, Euclidean cost)."""
    import ot

    if a.shape[0] == 0 or b.shape[0] == 0:
        return float("inf")
    x, y = a.double().numpy(), b.double().numpy()
    cost = ot.dist(x, y, metric="euclidean")
    return float(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost))


def retrieve(reference: torch.Tensor, candidates: Sequence[torch.Tensor]) -> tuple[int, list[float]]:
    """Index of the candidate feature set closest to ``reference`` by EMD, and all distances."""
    dist = [earth_movers_distance(reference, c) for c in candidates]
    return int(np.argmin(dist)), dist


def predicted_features(grid: torch.Tensor, mask: np.ndarray, threshold: float = 0.5) -> torch.Tensor:
    """Features of the target cells a predicted mask mostly covers (the most covered ones for small masks)."""
    cover = mask_to_grid(mask, grid.shape[0])
    cells = cover >= threshold
    if not cells.any() and cover.max() > 0:
        cells = cover >= cover.max() - 1e-6
    return grid[torch.as_tensor(cells)]


class P2SAM(OneShotMethod):
    """Part-aware prompts (see module docstring).

    Parameters
    ----------
    parts : sequence of int
        Candidate part counts (paper: 1 … 5).
    negatives : int
        Background clusters, one negative click each (paper, natural images: 1).
    """

    name = "p2sam"

    def __init__(self, model, *, parts: Sequence[int] = (1, 2, 3, 4, 5), negatives: int = 1, seed: int = 0,
                 **kwargs) -> None:
        super().__init__(model, **kwargs)
        if not parts or min(parts) < 1:
            raise ValueError("part counts must be at least 1")
        self.parts, self.negatives, self.seed = tuple(int(n) for n in parts), int(negatives), seed
        self.part_sets: dict[int, list[torch.Tensor]] = {}
        self.background_sets: dict[int, torch.Tensor] = {}

    def _prepare_reference(self, grid) -> None:
        for oid, ref in self.reference.items():
            self.part_sets[oid] = [part_vectors(ref.foreground, n, self.seed) for n in self.parts]
            self.background_sets[oid] = part_vectors(ref.background, self.negatives, self.seed)

    def _segment_object(self, emb, grid, object_id: int, index: int) -> ObjectResult:
        ref = self.reference[object_id]
        candidates = []
        for parts in self.part_sets[object_id]:
            points, labels = part_prompts(grid, parts, self.background_sets[object_id], emb.image_hw)
            decoded = self._refine(emb, points, labels)
            last = three_passes(self.model, emb, decoded, labels)[-1]
            candidates.append((points, labels, decoded, last))
        best, dist = retrieve(ref.foreground, [predicted_features(grid, c[3].mask) for c in candidates])
        points, labels, decoded, last = candidates[best]
        info = {"parts": int((labels == 1).sum()), "emd": dist, "part_counts": list(self.parts)}
        return ObjectResult(object_id, last.mask, last.score, points, labels, decoded, box=last.box, info=info)
