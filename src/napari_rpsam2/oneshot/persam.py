"""PerSAM (Zhang et al., ICLR 2024) on SAM2: one positive and one negative click from a prototype.

The target embedding is the L2-normalised mean of the reference object's
foreground features; its cosine similarity with the target slice gives a
positive click at the most similar grid cell and a negative click at the
least similar one, then the three decoder passes of :mod:`.passes`.
"""

from __future__ import annotations

import numpy as np

from .features import cell_to_pixel, similarity
from .method import ObjectResult, OneShotMethod
from .passes import three_passes

__all__ = ["PerSAM", "prototype_prompts"]


def prototype_prompts(sim: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Positive click at the argmax and negative click at the argmin of a (G, G) similarity map."""
    flat, grid = np.asarray(sim).ravel(), np.shape(sim)[-1]
    points = np.array([cell_to_pixel(int(np.argmax(flat)), image_hw, grid),
                       cell_to_pixel(int(np.argmin(flat)), image_hw, grid)])
    return points, np.array([1, 0])


class PerSAM(OneShotMethod):
    """PerSAM's training-free personalisation, on the SAM2 engine (see module docstring)."""

    name = "persam"

    def _segment_object(self, emb, grid, object_id: int, index: int) -> ObjectResult:
        ref = self.reference[object_id]
        sim = similarity(grid, ref.prototype[None])[0]
        points, labels = prototype_prompts(sim, emb.image_hw)
        decoded = self._refine(emb, points, labels)
        passes = three_passes(self.model, emb, decoded, labels)
        last = passes[-1]
        return ObjectResult(object_id, last.mask, last.score, points, labels, decoded, box=last.box,
                            info={"passes": len(passes)})
