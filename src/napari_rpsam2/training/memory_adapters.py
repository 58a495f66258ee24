"""Training SAM2's memory-attention adapters on short clips, through SAM2's own tracking step.

A clip is a few consecutive slices of one object, starting on a slice where it
is annotated.  On the first slice SAM2 gets the object's ground-truth prompts
(a jittered box and clicks drawn inside it) as a conditioning frame; each later
slice is tracked with SAM2's memory (memory encoder, memory attention, object
pointers: ``SAM2Base.track_step``, the step SAM2's video predictor runs), and
the loss is Dice + binary cross-entropy between each tracked slice's low-res
logits and that slice's labels of the same object id.  Gradients run back
through the whole clip: memory attention and the decoder learn; the encoder is
not trained here (each slice is encoded without gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..model.backbone import SAM2Backbone
from ..model.coords import normalized_to_prompt, pixels_to_normalized
from ..model.embedding import ImageEmbedding
from ..model.prompts import box_to_normalized
from ..model.video_features import CachedVideoPredictor
from .data import AnnotatedStack

__all__ = ["Clip", "object_clips", "clip_logits", "mask_loss", "ClipTrainer"]


@dataclass(frozen=True)
class Clip:
    """Consecutive slices of one object; its prompts go on the first."""

    slices: tuple[int, ...]
    object_id: int


def object_clips(stack: AnnotatedStack, length: int) -> list[Clip]:
    """A clip of up to ``length`` slices from every annotated object forward (at least 2 slices, one size).

    An object is followed by its label id, so the stack's labels should keep one id per object
    through the slices (binary masks split into regions number them per slice, largest first).
    """
    if length < 2:
        raise ValueError("a clip needs at least 2 slices")
    clips = []
    for obj in stack.objects():
        start, end = obj.slice_index, obj.slice_index + 1
        while end < min(len(stack), start + length) and stack.image_hw(end) == stack.image_hw(start):
            end += 1
        if end - start >= 2:
            clips.append(Clip(tuple(range(start, end)), obj.object_id))
    return clips


def mask_loss(logits: torch.Tensor, masks: list[np.ndarray]) -> torch.Tensor:
    """Dice + BCE between low-res logits ``(B, L, L)`` and full-size boolean masks (resized to ``L``)."""
    from torch.nn import functional as F

    target = torch.as_tensor(np.stack(masks), dtype=torch.float32, device=logits.device)[:, None]
    target = F.interpolate(target, size=logits.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * target).sum((1, 2)) + 1) / (prob.sum((1, 2)) + target.sum((1, 2)) + 1)
    return dice.mean() + F.binary_cross_entropy_with_logits(logits, target)


def clip_logits(backbone: SAM2Backbone, features: Callable[[int], ImageEmbedding], clip: Clip,
                box: np.ndarray, clicks: np.ndarray, image_hw: tuple[int, int]) -> torch.Tensor:
    """SAM2's low-res logits ``(T-1, L, L)`` of the clip's tracked slices (with gradients).

    ``features(slice)`` gives a slice's embedding (with its memory features); the first slice
    is conditioned on ``box`` ``(top, left, bottom, right)`` and positive ``clicks`` ``(K, 2)``.
    """
    predictor = CachedVideoPredictor.sharing(backbone.model)
    state = predictor.new_state(max(clip.slices) + 1, image_hw, features)
    xy = np.concatenate([box_to_normalized(box, image_hw), pixels_to_normalized(clicks, image_hw)])
    coords = normalized_to_prompt(torch.as_tensor(xy, dtype=torch.float32, device=backbone.device)[None],
                                  backbone.input_size)
    labels = torch.tensor([[2, 3] + [1] * len(clicks)], dtype=torch.int32, device=backbone.device)
    points = {"point_coords": coords, "point_labels": labels}
    outputs: dict[str, dict] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    tracked = []
    with backbone.autocast():
        for t, index in enumerate(clip.slices):
            _, _, feats, pos, sizes = predictor._get_image_feature(state, index, 1)
            out = predictor.track_step(t, t == 0, feats, pos, sizes, points if t == 0 else None, None, outputs,
                                       len(clip.slices), False, True)
            outputs["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = out
            if t > 0:
                tracked.append(out["pred_masks"][:, 0].float())
    return torch.cat(tracked)


class ClipTrainer:
    """Loss of one clip at a time, the slices' embeddings kept while the encoder cannot change.

    Parameters
    ----------
    backbone : SAM2Backbone
        SAM2 with its adapters hooked on.
    stack : AnnotatedStack
        The annotated slices.
    pictures : list of ndarray
        Each slice as the encoder's ``(H, W, 3)`` picture.
    keep_embeddings : bool
        Keep every slice's embedding for the whole run (right when no encoder or neck
        adapter learns); else each clip encodes its slices again.
    """

    def __init__(self, backbone: SAM2Backbone, stack: AnnotatedStack, pictures: list[np.ndarray],
                 keep_embeddings: bool) -> None:
        self.backbone, self.stack, self.pictures = backbone, stack, pictures
        self.keep = keep_embeddings
        self._embeddings: dict[int, ImageEmbedding] = {}

    def _features(self, index: int) -> ImageEmbedding:
        emb = self._embeddings.get(index)
        if emb is None:
            emb = self._embeddings[index] = self.backbone.encode(self.pictures[index])
        return emb

    def loss(self, clip: Clip, box: np.ndarray, clicks: np.ndarray) -> torch.Tensor:
        """Dice + BCE of the tracked slices of ``clip`` against their labels."""
        if not self.keep:
            self._embeddings.clear()
        masks = [np.asarray(self.stack.labels[i]) == clip.object_id for i in clip.slices]
        logits = clip_logits(self.backbone, self._features, clip, box, clicks, self.stack.image_hw(clip.slices[0]))
        return mask_loss(logits, masks[1:])
