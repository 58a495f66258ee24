"""P²SAM: part-aware prompts with distribution-guided retrieval, on SAM2.

The reference object's foreground features are clustered (scikit-learn
k-means++) into ``n`` parts; each part's mean feature gives one positive
click at the most similar target cell.  Negative clicks follow one of the
paper's two rules:

* ``natural``: one negative at the lowest score of the average of the part
  similarity maps (PerSAM's rule, for images whose background says little
  about the target's);
* ``medical``: the background features are clustered the same way and each
  cluster gives one negative at its most similar cell; ``negatives`` is a
  number (the paper's CT setting: 1) or several numbers, a retrieval range
  searched like the part counts (its endoscopy setting).

Every combination of a part count in ``parts`` and a negative count gives a
candidate mask from one decoder pass (``cascade=True`` adds PerSAM's two
refinement passes; the paper has none); :mod:`.retrieval` picks the candidate
closest to the reference foreground by earth mover's distance.  Clustering
and the reference's feature cloud depend on the reference only and are
computed once per reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch.nn import functional as F

from .features import cell_to_pixel, similarity
from .method import ObjectResult, OneShotMethod
from .passes import decode, three_passes
from .retrieval import MAX_POINTS, Cloud, cell_cloud, earth_movers_distance, predicted_cells, retrieve

__all__ = ["P2SAM", "NEGATIVE_RULES", "part_vectors", "part_prompts", "earth_movers_distance", "retrieve"]

NEGATIVE_RULES = ("natural", "medical")


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


def part_prompts(grid: torch.Tensor, parts: torch.Tensor, background: torch.Tensor | None,
                 image_hw: tuple[int, int], part_sim: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One positive click per part (argmax of its similarity) and the negative click(s).

    ``background`` (k, C) gives one negative per vector (the medical rule);
    ``None`` gives one negative at the minimum of the mean part similarity
    map (the natural rule).  ``part_sim`` may pass the part maps if computed.
    """
    sim = similarity(grid, parts) if part_sim is None else part_sim
    taken: set[int] = set()
    pos = _best_cells(sim, taken)
    if background is None:
        neg = _best_cells(sim.mean(0, keepdims=True), taken, highest=False)
    else:
        neg = _best_cells(similarity(grid, background), taken)
    points = np.array([cell_to_pixel(c, image_hw, grid.shape[0]) for c in pos + neg])
    return points, np.array([1] * len(pos) + [0] * len(neg))


def _counts(value: int | Sequence[int], what: str) -> tuple[int, ...]:
    counts = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not counts or min(int(c) for c in counts) < 1:
        raise ValueError(f"{what} must be at least 1 (got {value!r})")
    return tuple(int(c) for c in counts)


class P2SAM(OneShotMethod):
    """Part-aware prompts (see module docstring).

    Parameters
    ----------
    parts : sequence of int
        Candidate part counts (paper: 1 … 5).
    negative_rule : {"medical", "natural"}
        Where negative clicks come from (see module docstring).
    negatives : int or sequence of int
        Medical rule: background clusters, one negative click each; several
        numbers make a retrieval range.  Ignored by the natural rule (one negative).
    cascade : bool
        Decode each candidate with PerSAM's three passes instead of one (not in the paper).
    max_points : int
        Largest feature set compared cell by cell in the retrieval (see :mod:`.retrieval`).
    """

    name = "p2sam"

    def __init__(self, model, *, parts: Sequence[int] = (1, 2, 3, 4, 5), negative_rule: str = "medical",
                 negatives: int | Sequence[int] = 1, cascade: bool = False, seed: int = 0,
                 max_points: int = MAX_POINTS, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if negative_rule not in NEGATIVE_RULES:
            raise ValueError(f"negative_rule must be one of {', '.join(NEGATIVE_RULES)}, not {negative_rule!r}")
        self.parts = _counts(tuple(parts), "part counts")
        self.negative_rule, self.cascade, self.seed = negative_rule, bool(cascade), seed
        self.negatives = _counts(negatives, "negative counts") if negative_rule == "medical" else (1,)
        self.max_points = int(max_points)
        self.part_sets: dict[int, list[torch.Tensor]] = {}
        self.background_sets: dict[int, list[torch.Tensor | None]] = {}
        self.reference_clouds: dict[int, Cloud] = {}

    @property
    def decoder_passes(self) -> int:
        """Decoder passes per object and slice (the most; a cascade stops early on an empty mask)."""
        return len(self.parts) * len(self.negatives) * (3 if self.cascade else 1)

    def _prepare_reference(self, grid) -> None:
        for oid, ref in self.reference.items():
            self.part_sets[oid] = [part_vectors(ref.foreground, n, self.seed) for n in self.parts]
            self.background_sets[oid] = ([None] if self.negative_rule == "natural" else
                                         [part_vectors(ref.background, n, self.seed) for n in self.negatives])
            self.reference_clouds[oid] = cell_cloud(grid, ref.cells, self.max_points)

    def _decode(self, emb, points: np.ndarray, labels: np.ndarray):
        if self.cascade:
            return three_passes(self.model, emb, points, labels)[-1]
        return decode(self.model, emb, points, labels, multimask=False)

    def _segment_object(self, emb, grid, object_id: int, index: int) -> ObjectResult:
        candidates, clouds, seen = [], [], {}
        for parts in self.part_sets[object_id]:
            part_sim = similarity(grid, parts)
            for background in self.background_sets[object_id]:
                points, labels = part_prompts(grid, parts, background, emb.image_hw, part_sim)
                decoded = self._refine(emb, points, labels)
                last = self._decode(emb, decoded, labels)
                cells = predicted_cells(last.mask, grid.shape[0])
                key = cells.tobytes()
                if key not in seen:  # the same cells give the same distance: compute it once
                    seen[key] = len(clouds)
                    clouds.append(cell_cloud(grid, cells, self.max_points))
                candidates.append((points, labels, decoded, last, seen[key]))
        _, unique = retrieve(self.reference_clouds[object_id], clouds)
        dist = [unique[c[4]] for c in candidates]
        best = int(np.argmin(dist))
        points, labels, decoded, last, _ = candidates[best]
        info = {"parts": int((labels == 1).sum()), "negatives": int((labels == 0).sum()), "emd": dist,
                "part_counts": list(self.parts), "negative_counts": list(self.negatives),
                "negative_rule": self.negative_rule, "cascade": self.cascade}
        return ObjectResult(object_id, last.mask, last.score, points, labels, decoded, box=last.box, info=info)
