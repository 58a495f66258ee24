"""SAM2 decoder calls with generated prompts: points, a box and a mask prompt.

The cascade PerSAM uses (and P²SAM reuses) is three decoder passes on one
slice: the points; the points plus the first pass's low-res logits as the
mask prompt; the points, the box of the second mask and its logits.  Boxes
go to SAM2's prompt encoder as two corner points labelled 2 and 3, first in
the prompt, the way SAM2's image predictor sends them.

When refinement is on, every positive click is moved by the RP-SAM2 shift
block once, before the first pass; negative clicks and box corners never move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..model.backbone import logits_to_image
from ..model.coords import normalized_to_pixels, pixels_to_normalized
from ..model.embedding import ImageEmbedding
from .guidance import DecoderGuidance, guided_decoder

__all__ = ["Decoded", "box_of", "mask_to_logits", "refine_clicks", "decode", "three_passes", "BOX_LABELS"]

BOX_LABELS = (2, 3)
LOW_RES = 256
"""Side of :func:`mask_to_logits`' output: SAM2's low-res frame at its 1024 input (resampled for other sizes)."""


@dataclass
class Decoded:
    """One decoder answer.

    Attributes
    ----------
    mask : ndarray (H, W) bool
    logits : tensor (L, L)
        Low-res logits (the next pass's mask prompt; ``L`` is the backbone's ``low_res_size``).
    score : float
        SAM2's predicted IoU.
    box : ndarray (4,) or None
        ``(row0, col0, row1, col1)`` pixels of the box prompt, if one was given.
    """

    mask: np.ndarray
    logits: torch.Tensor
    score: float
    box: np.ndarray | None = None


def box_of(mask: np.ndarray) -> np.ndarray | None:
    """``(row0, col0, row1, col1)`` of the smallest box around ``mask`` (pixel centres), ``None`` if empty."""
    rows = np.flatnonzero(np.any(mask, axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(np.any(mask, axis=0))
    return np.array([rows[0], cols[0], rows[-1], cols[-1]], dtype=np.float64)


def mask_to_logits(mask: np.ndarray, magnitude: float = 10.0) -> torch.Tensor:
    """A binary (H, W) mask as SAM2 low-res logits (1, 1, 256, 256): ``±magnitude`` by cover."""
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
    cover = F.adaptive_avg_pool2d(m, (LOW_RES, LOW_RES))
    return (cover - 0.5) * (2.0 * magnitude)


def _mask_prompt(logits: torch.Tensor, size: int) -> torch.Tensor:
    """Low-res logits as SAM2's dense mask prompt (1, 1, size, size), resampled if made at another size."""
    t = logits.reshape(1, 1, *logits.shape[-2:]).float()
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t


def refine_clicks(model, embedding: ImageEmbedding, points_rc: np.ndarray, labels: np.ndarray,
                  refine: bool, context=None) -> np.ndarray:
    """Clicks ``(row, col)`` after the shift block moved the positive ones (unchanged if ``refine`` is off)."""
    pts = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
    positive = np.asarray(labels) == 1
    if not refine or not positive.any():
        return pts.copy()
    with torch.inference_mode():
        xy = torch.as_tensor(pixels_to_normalized(pts[positive], embedding.image_hw), dtype=torch.float32,
                             device=model.device)
        if context is None:
            context = model.image_context(embedding)
        moved = model.refine_normalized(embedding, xy, context)
        out = pts.copy()
        out[positive] = normalized_to_pixels(moved.double().cpu().numpy(), embedding.image_hw)
    h, w = embedding.image_hw
    np.clip(out[:, 0], 0, h - 1, out=out[:, 0])
    np.clip(out[:, 1], 0, w - 1, out=out[:, 1])
    return out


def decode(model, embedding: ImageEmbedding, points_rc: np.ndarray, labels: np.ndarray, *,
           box: np.ndarray | None = None, mask_input: torch.Tensor | None = None,
           multimask: bool = False, guidance: DecoderGuidance | None = None) -> Decoded:
    """One SAM2 decoder pass on one slice from points, an optional box and an optional mask prompt.

    ``guidance`` adds PerSAM's target-guided attention and semantic prompting
    (:mod:`.guidance`); ``None`` is SAM2's decoder as it is.
    """
    pts = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
    lab = np.asarray(labels, dtype=np.int64).ravel()
    if box is not None:
        corners = np.array([[box[0], box[1]], [box[2], box[3]]], dtype=np.float64)
        pts, lab = np.concatenate([corners, pts]), np.concatenate([np.array(BOX_LABELS), lab])
    dev = model.device
    with torch.inference_mode():
        xy = torch.as_tensor(pixels_to_normalized(pts, embedding.image_hw), dtype=torch.float32, device=dev)
        mi = None if mask_input is None else _mask_prompt(mask_input, model.backbone.low_res_size).to(dev)
        with guided_decoder(model.backbone.model.sam_mask_decoder, guidance):
            logits, iou = model.backbone.decode(embedding, xy[None], torch.as_tensor(lab, device=dev)[None],
                                                bool(multimask), mask_input=mi)
        mask = logits_to_image(logits, embedding.image_hw)[0] > 0
    return Decoded(mask.cpu().numpy(), logits[0].detach(), float(iou[0]), box)


def three_passes(model, embedding: ImageEmbedding, points_rc: np.ndarray, labels: np.ndarray,
                 guidance: DecoderGuidance | None = None) -> list[Decoded]:
    """PerSAM's cascade: points; + previous logits; + box of that mask and its logits.

    ``points_rc`` are decoded as given (refine them first with
    :func:`refine_clicks`).  The first pass asks for one mask; the two
    refinement passes pick SAM2's best of three.  When the second mask is
    empty there is no box and the cascade stops after two passes.  ``guidance``
    (PerSAM's decoder changes) applies to every pass.
    """
    first = decode(model, embedding, points_rc, labels, multimask=False, guidance=guidance)
    second = decode(model, embedding, points_rc, labels, mask_input=first.logits, multimask=True, guidance=guidance)
    box = box_of(second.mask)
    if box is None:
        return [first, second]
    third = decode(model, embedding, points_rc, labels, box=box, mask_input=second.logits, multimask=True,
                   guidance=guidance)
    return [first, second, third]
