"""Med-PerSAM: prompts from a warped reference mask, on SAM2.

A warping model (:mod:`.registration`) is trained at test time from the
reference onto the stack's slices; it warps the reference mask onto each
target, and that mask is the dense mask prompt.  Positive clicks come from
equal subregions of its erosion (the most prototype-similar pixel of each),
negative clicks from subregions of the ring between its dilation and erosion
(the least similar pixel of each); the box is the mask's box.  One refinement
pass then regenerates points and box from SAM2's output and feeds SAM2's
logits back as the mask prompt.  The warping model is then retrained with
SAM2's outputs as pseudo-labels (``rounds``, 10 epochs each: the paper's 5).
The reference prototype is added to the decoder's tokens (PerSAM's
target-semantic prompting, which the paper adopts).  With several objects a
pixel claimed by more than one goes to the one with the highest logit.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence

import numpy as np
import torch

from .. import jobs
from ..model.backbone import logits_to_image
from .features import feature_grid, similarity, upsample_map
from .medprompts import ORGAN_TYPES, PROMPT_COUNTS, candidate_regions, subregion_prompts
from .method import ObjectResult, OneShotMethod, SliceResult
from .passes import box_of, decode, mask_to_logits
from .persam import persam_guidance
from .registration import WarpConfig, grey_picture, one_hot, train_warp, warp_labels

__all__ = ["MedPerSAM", "candidate_regions", "subregion_prompts", "highest_logit", "retrain_steps"]


def highest_logit(logits: Sequence[np.ndarray | None], shape: tuple[int, int]) -> list[np.ndarray]:
    """Masks from per-object (H, W) logits: each pixel goes to the object with the highest logit, if above 0.

    ``None`` stands for an object SAM2 was not asked about (it claims nothing).
    """
    if not logits:
        return []
    stack = np.stack([np.full(shape, -np.inf, np.float32) if x is None else np.asarray(x, np.float32)
                      for x in logits])
    best = stack.argmax(0)
    foreground = stack.max(0) > 0
    return [foreground & (best == k) for k in range(len(logits))]


def retrain_steps(config: WarpConfig, targets: int) -> int:
    """Optimiser steps of one retraining round: ``retrain_steps``, or ``retrain_epochs`` passes over the targets."""
    if config.retrain_steps is not None:
        return int(config.retrain_steps)
    return int(config.retrain_epochs) * -(-int(targets) // max(1, int(config.batch)))


class MedPerSAM(OneShotMethod):
    """Warping-based prompts (see module docstring).

    Parameters
    ----------
    config : WarpConfig
        The warping model and its training (retraining: ``retrain_epochs``, paper 10).
    rounds : int
        Retraining rounds with SAM2's masks as pseudo-labels (paper: 5).
    organ : {"single", "bilateral"}
        Bilateral organs get 10 clicks of each kind, half from each side; single ones 5 (the paper's counts).
    positives, negatives : int, optional
        Clicks from the erosion and from the ring (default: by ``organ``).
    kernel : int, optional
        Radius in pixels of the erosion / dilation disk (default: 15 % of the mask's equivalent radius).
    refinements : int
        Passes that regenerate the prompts from SAM2's previous output (paper: 1).
    semantic_prompt : bool
        Add the target embedding to the decoder's tokens (PerSAM's target-semantic prompting; paper: on).
    """

    name = "medpersam"

    def __init__(self, model, *, config: WarpConfig = WarpConfig(), rounds: int = 5, organ: str = "single",
                 positives: int | None = None, negatives: int | None = None, kernel: int | None = None,
                 refinements: int = 1, semantic_prompt: bool = True, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if organ not in ORGAN_TYPES:
            raise ValueError(f"organ must be one of {', '.join(ORGAN_TYPES)}, not {organ!r}")
        if int(rounds) < 0 or int(refinements) < 0 or (kernel is not None and int(kernel) < 1):
            raise ValueError("rounds and refinements must be at least 0 and the kernel radius at least 1 pixel")
        self.config, self.rounds, self.refinements = config, int(rounds), int(refinements)
        self.organ, self.kernel = organ, None if kernel is None else int(kernel)
        self.positives = PROMPT_COUNTS[organ] if positives is None else int(positives)
        self.negatives = PROMPT_COUNTS[organ] if negatives is None else int(negatives)
        self.semantic_prompt = bool(semantic_prompt)
        self.warp_model = None
        self.warped: dict[int, np.ndarray] = {}
        self.training_seconds = 0.0

    def _prepare_reference(self, grid) -> None:
        self._ref_picture = grey_picture(self.reference_image, self.config.size)
        self._ref_onehot = one_hot(self.reference_labels, self.object_ids, self.config.size)
        self.warp_model, self.warped = None, {}

    def prepare(self, images, indices: Sequence[int], *, keys: Sequence[Hashable] | None = None,
                progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None) -> None:
        """Train the warping model onto ``images[i]`` for ``i`` in ``indices`` and warp the reference mask."""
        self._require_reference()
        indices = [int(i) for i in indices]
        if not indices:
            return
        start = time.perf_counter()
        pictures = torch.stack([grey_picture(images[i], self.config.size) for i in indices])
        self.warp_model = train_warp(self._ref_picture, self._ref_onehot, pictures, config=self.config,
                                     progress=progress, cancel=cancel)
        self._warp_all(images, indices, pictures)
        for r in range(self.rounds):
            pseudo = []
            for n, i in enumerate(indices):
                jobs.check(cancel, "Med-PerSAM retraining")
                result = self.segment(images[i], i, key=None if keys is None else keys[n])
                pseudo.append(one_hot(result.label_plane(np.shape(images[i])[:2]), self.object_ids, self.config.size))
                jobs.report(progress, f"pseudo-labels {r + 1}/{self.rounds}", n + 1, len(indices))
            self.warp_model = train_warp(self._ref_picture, self._ref_onehot, pictures, config=self.config,
                                         model=self.warp_model, pseudo_masks=torch.stack(pseudo),
                                         steps=retrain_steps(self.config, len(indices)), progress=progress,
                                         cancel=cancel)
            self._warp_all(images, indices, pictures)
        self.training_seconds = time.perf_counter() - start

    def _warp_all(self, images, indices: list[int], pictures: torch.Tensor) -> None:
        self.warped = {i: warp_labels(self.warp_model, self._ref_picture, self.reference_labels, self.object_ids,
                                      pictures[n], out_hw=np.shape(images[i])[:2])
                       for n, i in enumerate(indices)}

    def segment(self, image: np.ndarray, index: int, *, key: Hashable | None = None) -> SliceResult:
        """Every object on one slice; a pixel two objects claim goes to the one with the higher logit."""
        if int(index) not in self.warped:
            raise RuntimeError(f"slice {index} was not in prepare(): train the warping model on it first")
        self._require_reference()
        emb = self.embed(image, key)
        grid = feature_grid(self.model.backbone, emb)
        pairs = [self._decode_object(emb, grid, oid, index) for oid in self.object_ids]
        objects = [obj for obj, _ in pairs]
        if len(objects) > 1:
            logits = [None if lo is None else logits_to_image(lo[None], emb.image_hw)[0].cpu().numpy()
                      for _, lo in pairs]
            for obj, mask in zip(objects, highest_logit(logits, emb.image_hw)):
                obj.mask = mask
        return SliceResult(int(index), objects)

    def _prompts(self, mask: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        points, labels = subregion_prompts(mask, sim, self.positives, self.negatives, self.kernel,
                                           bilateral=self.organ == "bilateral")
        return points, labels, box_of(mask)

    def _segment_object(self, emb, grid, object_id: int, index: int) -> ObjectResult:
        return self._decode_object(emb, grid, object_id, index)[0]

    def _decode_object(self, emb, grid, object_id: int, index: int) -> tuple[ObjectResult, torch.Tensor | None]:
        """One object's result and SAM2's low-res logits of it (``None`` when the warped mask vanished)."""
        k = self.object_ids.index(object_id)
        prompt = self.warped[int(index)][k]
        ref = self.reference[object_id]
        sim = upsample_map(similarity(grid, ref.prototype[None])[0], emb.image_hw)
        points, labels, box = self._prompts(prompt, sim)
        if box is None:  # the warped mask vanished: nothing to prompt with
            empty = np.zeros(emb.image_hw, bool)
            return ObjectResult(object_id, empty, 0.0, points, labels, points.copy(), None, prompt), None
        guidance = persam_guidance(ref, sim, attention=False, semantic=self.semantic_prompt)
        first = {"initial_points": points, "initial_labels": labels}
        decoded = self._refine(emb, points, labels)
        out = decode(self.model, emb, decoded, labels, box=box, mask_input=mask_to_logits(prompt), multimask=False,
                     guidance=guidance)
        for _ in range(self.refinements):
            if not out.mask.any():
                break
            points, labels, box = self._prompts(out.mask, sim)
            decoded = self._refine(emb, points, labels)
            out = decode(self.model, emb, decoded, labels, box=box, mask_input=out.logits, multimask=True,
                         guidance=guidance)
        obj = ObjectResult(object_id, out.mask, out.score, points, labels, decoded, box=box, mask_prompt=prompt,
                           info={**first, "warping_seconds": self.training_seconds})
        return obj, out.logits
