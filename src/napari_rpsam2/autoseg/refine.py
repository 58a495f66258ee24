"""SAM2's two refinement stages on the generator's proposals (RFMedSAM 2's dual-stage refinement).

Stage 1 gives SAM2 each component's box and the generator's class log-odds
as the dense mask prompt (resized to SAM2's 256×256 low-res mask input);
stage 2 gives it the box of the stage-1 mask and the stage-1 low-res logits.
Optionally a positive click at the component's most interior pixel joins
both stages (moved by the model's shift block when ``refine_clicks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..model.backbone import logits_to_image
from ..model.coords import pixels_to_normalized
from ..model.prompts import box_to_normalized
from .components import Component, interior_point, mask_box
from .generator import SlicePrediction, resize

__all__ = ["RefineOptions", "StageCall", "RefinedObject", "low_res_mask_prompt", "refine_component",
           "refine_slice"]

LOW_RES = 256  # SAM2's mask prompt side (4 × the 64² embedding)


@dataclass
class RefineOptions:
    """Switches of the automatic path.

    Attributes
    ----------
    stages : int
        0 the generator's own masks, 1 or 2 SAM2 refinements.
    mask_prompt : bool
        Give SAM2 the previous logits as the dense mask prompt (the method); off: boxes only.
    clicks : bool
        Add one positive click at the component's most interior pixel.
    refine_clicks : bool
        Move that click with the model's shift block (identity when none was trained).
    min_area : int
        Components smaller than this many pixels are dropped.
    follow : bool
        Stacks: refine each object on its key slice only and follow it through
        the stack with SAM2's memory (:mod:`.follow`); off: every slice on its own.
    """

    stages: int = 2
    mask_prompt: bool = True
    clicks: bool = False
    refine_clicks: bool = True
    min_area: int = 16
    follow: bool = False

    def __post_init__(self) -> None:
        if self.stages not in (0, 1, 2):
            raise ValueError(f"stages must be 0, 1 or 2 (got {self.stages})")
        if self.min_area < 1:
            raise ValueError("min_area must be at least 1 pixel")


@dataclass
class StageCall:
    """One SAM2 call: its prompts and what came back (low-res, SAM2's 256² frame)."""

    box: np.ndarray                   # (top, left, bottom, right) pixels
    clicks: np.ndarray                # (N, 2) row/col positive clicks as sent (after the shift block)
    mask_input: torch.Tensor | None   # (1, 1, 256, 256) logits, or None
    logits: torch.Tensor              # (256, 256)
    iou: float


@dataclass
class RefinedObject:
    """One object found on a slice."""

    class_index: int
    mask: np.ndarray
    score: float
    component: Component
    calls: list[StageCall] = field(default_factory=list)


def low_res_mask_prompt(logits_hw: np.ndarray, size: int = LOW_RES) -> torch.Tensor:
    """Image-size logits ``(H, W)`` as SAM2's mask prompt ``(1, 1, size, size)`` (the backbone's low-res side).

    SAM2's image encoder stretches the image to its square input, so the
    low-res frame covers the whole image: a plain bilinear resize (antialiased
    when shrinking) maps one onto the other.
    """
    x = torch.as_tensor(np.ascontiguousarray(logits_hw, dtype=np.float32))[None, None]
    return resize(x, (size, size))


def _sam2_call(model, emb, box: np.ndarray, clicks_xy: torch.Tensor | None,
               mask_input: torch.Tensor | None) -> tuple[torch.Tensor, float]:
    """One SAM2 decoder call with a box (corners labelled 2, 3), optional positive clicks and mask prompt."""
    dev = model.device
    pts = torch.as_tensor(box_to_normalized(box, emb.image_hw), dtype=torch.float64, device=dev)
    lab = torch.tensor([2, 3], device=dev)
    if clicks_xy is not None and len(clicks_xy):
        pts = torch.cat([pts, clicks_xy.to(dev, torch.float64)])
        lab = torch.cat([lab, torch.ones(len(clicks_xy), dtype=lab.dtype, device=dev)])
    mask = None if mask_input is None else mask_input.to(dev)
    logits, iou = model.backbone.decode(emb, pts[None], lab[None], False, mask_input=mask)
    return logits[0], float(iou[0])


def _click(model, emb, comp: Component, options: RefineOptions) -> tuple[torch.Tensor | None, np.ndarray]:
    if not options.clicks:
        return None, np.zeros((0, 2))
    rc = interior_point(comp.mask)[None]
    xy = torch.as_tensor(pixels_to_normalized(rc, emb.image_hw), dtype=torch.float64, device=model.device)
    if options.refine_clicks:
        xy = model.refine_normalized(emb, xy).to(torch.float64)
        h, w = emb.image_hw
        rc = np.stack([xy[:, 1].cpu().numpy() * h - 0.5, xy[:, 0].cpu().numpy() * w - 0.5], axis=-1)
    return xy, rc


@torch.inference_mode()
def refine_component(model, emb, comp: Component, prediction: SlicePrediction,
                     options: RefineOptions) -> RefinedObject:
    """Refine one component through ``options.stages`` SAM2 calls (0: the component itself)."""
    if options.stages == 0:
        return RefinedObject(comp.class_index, comp.mask.copy(), comp.score, comp)
    clicks_xy, clicks_rc = _click(model, emb, comp, options)
    box = comp.box
    prior = (low_res_mask_prompt(prediction.class_logits(comp.class_index), model.backbone.low_res_size)
             if options.mask_prompt else None)
    calls: list[StageCall] = []
    mask = comp.mask
    for _ in range(options.stages):
        logits, iou = _sam2_call(model, emb, box, clicks_xy, prior)
        calls.append(StageCall(box.copy(), clicks_rc, prior, logits, iou))
        mask = (logits_to_image(logits[None], emb.image_hw)[0] > 0).cpu().numpy()
        new_box = mask_box(mask)
        box = box if new_box is None else new_box  # an empty stage-1 mask keeps the component's box
        prior = logits[None, None] if options.mask_prompt else None
    return RefinedObject(comp.class_index, mask, calls[-1].iou, comp, calls)


def refine_slice(model, emb, prediction: SlicePrediction, options: RefineOptions) -> list[RefinedObject]:
    """Every component of ``prediction`` refined; empty results are dropped."""
    from .components import components

    out = []
    for comp in components(prediction, min_area=options.min_area):
        obj = refine_component(model, emb, comp, prediction, options)
        if obj.mask.any():
            out.append(obj)
    return out
