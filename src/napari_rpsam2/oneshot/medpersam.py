"""Med-PerSAM: prompts from a warped reference mask, on SAM2.

A warping model (:mod:`.registration`) is trained at test time from the
reference onto the stack's slices; it warps the reference mask onto each
target, and that mask is the dense mask prompt.  Positive clicks come from
equal subregions of its erosion (the most prototype-similar pixel of each),
negative clicks from subregions of the ring between its dilation and erosion
(the least similar pixel of each); the box is the mask's box.  One refinement
pass then regenerates points and box from SAM2's output and feeds SAM2's
logits back as the mask prompt.  Optionally the warping model is retrained
with SAM2's outputs as pseudo-labels (``rounds``; the paper uses 5).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence

import numpy as np
import torch
from scipy import ndimage

from .. import jobs
from .features import similarity, upsample_map
from .method import ObjectResult, OneShotMethod, SliceResult
from .passes import box_of, decode, mask_to_logits
from .registration import WarpConfig, grey_picture, one_hot, train_warp, warp_labels

__all__ = ["MedPerSAM", "candidate_regions", "subregion_prompts"]


def candidate_regions(mask: np.ndarray, radius: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Erosion of ``mask`` (positive region) and the dilation-minus-erosion ring (negative region).

    ``radius`` defaults to 15 % of the mask's equivalent-disk radius (at
    least one pixel); a mask too thin to survive the erosion is its own
    positive region.
    """
    mask = np.asarray(mask, bool)
    if radius is None:
        radius = max(1, int(round(0.15 * np.sqrt(mask.sum() / np.pi))))
    eroded = ndimage.distance_transform_edt(mask) > radius
    if not eroded.any():
        eroded = mask.copy()
    dilated = ndimage.distance_transform_edt(~mask) <= radius
    return eroded, dilated & ~eroded


def _pick(region: np.ndarray, sim: np.ndarray, count: int, highest: bool) -> list[tuple[int, int]]:
    """Split the region's pixels (raster order) into ``count`` equal runs; best pixel of each."""
    flat = np.flatnonzero(region)
    if flat.size == 0 or count < 1:
        return []
    values = sim.ravel()
    picks = []
    for run in np.array_split(flat, min(count, flat.size)):
        best = run[np.argmax(values[run])] if highest else run[np.argmin(values[run])]
        picks.append(divmod(int(best), region.shape[1]))
    return picks


def subregion_prompts(mask: np.ndarray, sim: np.ndarray, positives: int = 5, negatives: int = 5,
                      radius: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clicks ``(row, col)`` and labels from a mask prompt and a full-size similarity map."""
    inner, ring = candidate_regions(mask, radius)
    pos, neg = _pick(inner, sim, positives, True), _pick(ring, sim, negatives, False)
    points = np.array(pos + neg, dtype=np.float64).reshape(-1, 2)
    return points, np.array([1] * len(pos) + [0] * len(neg))


class MedPerSAM(OneShotMethod):
    """Warping-based prompts (see module docstring).

    Parameters
    ----------
    config : WarpConfig
        The warping model and its training.
    rounds : int
        Retraining rounds with SAM2's masks as pseudo-labels (paper: 5).
    positives, negatives : int
        Clicks from the erosion and from the ring (paper: 5 each for one organ).
    refinements : int
        Passes that regenerate the prompts from SAM2's previous output (paper: 1).
    """

    name = "medpersam"

    def __init__(self, model, *, config: WarpConfig = WarpConfig(), rounds: int = 0, positives: int = 5,
                 negatives: int = 5, refinements: int = 1, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.config, self.rounds, self.refinements = config, int(rounds), int(refinements)
        self.positives, self.negatives = int(positives), int(negatives)
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
                                         steps=self.config.retrain_steps, progress=progress, cancel=cancel)
            self._warp_all(images, indices, pictures)
        self.training_seconds = time.perf_counter() - start

    def _warp_all(self, images, indices: list[int], pictures: torch.Tensor) -> None:
        self.warped = {i: warp_labels(self.warp_model, self._ref_picture, self.reference_labels, self.object_ids,
                                      pictures[n], out_hw=np.shape(images[i])[:2])
                       for n, i in enumerate(indices)}

    def segment(self, image: np.ndarray, index: int, *, key: Hashable | None = None) -> SliceResult:
        if int(index) not in self.warped:
            raise RuntimeError(f"slice {index} was not in prepare(): train the warping model on it first")
        return super().segment(image, index, key=key)

    def _prompts(self, mask: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        points, labels = subregion_prompts(mask, sim, self.positives, self.negatives)
        return points, labels, box_of(mask)

    def _segment_object(self, emb, grid, object_id: int, index: int) -> ObjectResult:
        k = self.object_ids.index(object_id)
        prompt = self.warped[int(index)][k]
        sim = upsample_map(similarity(grid, self.reference[object_id].prototype[None])[0], emb.image_hw)
        points, labels, box = self._prompts(prompt, sim)
        if box is None:  # the warped mask vanished: nothing to prompt with
            empty = np.zeros(emb.image_hw, bool)
            return ObjectResult(object_id, empty, 0.0, points, labels, points.copy(), None, prompt)
        first = {"initial_points": points, "initial_labels": labels}
        decoded = self._refine(emb, points, labels)
        out = decode(self.model, emb, decoded, labels, box=box, mask_input=mask_to_logits(prompt), multimask=False)
        for _ in range(self.refinements):
            if not out.mask.any():
                break
            points, labels, box = self._prompts(out.mask, sim)
            decoded = self._refine(emb, points, labels)
            out = decode(self.model, emb, decoded, labels, box=box, mask_input=out.logits, multimask=True)
        return ObjectResult(object_id, out.mask, out.score, points, labels, decoded, box=box, mask_prompt=prompt,
                            info={**first, "warping_seconds": self.training_seconds})
