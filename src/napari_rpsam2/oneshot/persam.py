"""PerSAM (Zhang et al., ICLR 2024) on SAM2: one positive and one negative click from a prototype.

The target embedding is the L2-normalised mean of the reference object's
foreground features; its cosine similarity with the target slice gives a
positive click at the most similar grid cell and a negative click at the
least similar one, then the three decoder passes of :mod:`.passes`.  PerSAM's
two training-free decoder changes (:mod:`.guidance`) are on by default:
target-guided attention (the similarity map biases the decoder's
token-to-image attention) and target-semantic prompting (the target
embedding is added to the decoder's tokens).
"""

from __future__ import annotations

import numpy as np

from .features import ReferenceFeatures, cell_to_pixel, feature_grid, similarity
from .guidance import DecoderGuidance
from .method import ObjectResult, OneShotMethod
from .passes import three_passes

__all__ = ["PerSAM", "prototype_prompts", "persam_guidance"]


def prototype_prompts(sim: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Positive click at the argmax and negative click at the argmin of a (G, G) similarity map."""
    flat, grid = np.asarray(sim).ravel(), np.shape(sim)[-1]
    points = np.array([cell_to_pixel(int(np.argmax(flat)), image_hw, grid),
                       cell_to_pixel(int(np.argmin(flat)), image_hw, grid)])
    return points, np.array([1, 0])


def persam_guidance(ref: ReferenceFeatures, sim: np.ndarray, *, attention: bool, semantic: bool,
                    alpha: float = 1.0) -> DecoderGuidance | None:
    """The decoder guidance for one object and slice (``None`` when both parts are off)."""
    if not attention and not semantic:
        return None
    embedding = ref.embedding if ref.embedding is not None else ref.prototype
    return DecoderGuidance(similarity=sim if attention else None, embedding=embedding if semantic else None,
                           alpha=alpha)


class PerSAM(OneShotMethod):
    """PerSAM's training-free personalisation, on the SAM2 engine (see module docstring).

    Parameters
    ----------
    guided_attention : bool
        Bias the decoder's token-to-image attention by the similarity map (paper: on).
    semantic_prompt : bool
        Add the target embedding to the decoder's tokens (paper: on).
    attention_weight : float
        ``alpha``: weight of the standardised similarity in the attention logits.
    """

    name = "persam"

    def __init__(self, model, *, guided_attention: bool = True, semantic_prompt: bool = True,
                 attention_weight: float = 1.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.guided_attention, self.semantic_prompt = bool(guided_attention), bool(semantic_prompt)
        self.attention_weight = float(attention_weight)

    def decoder_guidance(self, object_id: int, emb, grid=None) -> DecoderGuidance | None:
        """The decoder guidance of one object on the slice of ``emb`` (``None`` with both parts off).

        A re-run of a slice from edited clicks uses it, so unchanged clicks give the run's masks.
        """
        self._require_reference()
        ref = self.reference[int(object_id)]
        grid = feature_grid(self.model.backbone, emb) if grid is None else grid
        sim = similarity(grid, ref.prototype[None])[0]
        return persam_guidance(ref, sim, attention=self.guided_attention, semantic=self.semantic_prompt,
                               alpha=self.attention_weight)

    def _segment_object(self, emb, grid, object_id: int, index: int) -> ObjectResult:
        ref = self.reference[object_id]
        sim = similarity(grid, ref.prototype[None])[0]
        points, labels = prototype_prompts(sim, emb.image_hw)
        decoded = self._refine(emb, points, labels)
        guidance = persam_guidance(ref, sim, attention=self.guided_attention, semantic=self.semantic_prompt,
                                   alpha=self.attention_weight)
        passes = three_passes(self.model, emb, decoded, labels, guidance)
        last = passes[-1]
        return ObjectResult(object_id, last.mask, last.score, points, labels, decoded, box=last.box,
                            info={"passes": len(passes), "guided_attention": self.guided_attention,
                                  "semantic_prompt": self.semantic_prompt})
