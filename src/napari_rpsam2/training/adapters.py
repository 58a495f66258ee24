"""Fine-tuning SAM2's adapters with prompts drawn from the ground truth (SAM2 itself frozen).

Per slice: the encoder runs with gradients (the encoder and neck adapters
learn), and every object is prompted with its box (jittered by a few percent
of its size) and positive clicks drawn inside it; the loss is Dice + binary
cross-entropy between SAM2's low-res logits and the object's mask resized to
SAM2's 256² frame.  Without encoder or neck adapters each slice is encoded
once, without gradients.  The memory-attention adapters take part only in
video propagation; this image path leaves them as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .. import jobs
from ..model.backbone import SAM2Backbone
from ..model.coords import pixels_to_normalized
from ..model.embedding import ImageEmbedding
from ..model.image_adapter import encoder_picture
from ..model.prompts import box_to_normalized
from .data import AnnotatedStack

__all__ = ["FinetuneConfig", "FinetuneEpoch", "encode_with_grad", "object_prompts", "adapter_loss",
           "finetune_adapters"]


@dataclass
class FinetuneConfig:
    """Adapter fine-tuning settings."""

    epochs: int = 20
    lr: float = 1e-3
    clicks: int = 1
    box_jitter: float = 0.05
    seed: int = 0


@dataclass
class FinetuneEpoch:
    """Mean loss of one pass over the slices."""

    epoch: int
    loss: float
    seconds: float


def encode_with_grad(backbone: SAM2Backbone, picture: np.ndarray) -> ImageEmbedding:
    """:meth:`SAM2Backbone.encode` with gradients flowing to the adapters."""
    m = backbone.model
    x = backbone.preprocess(picture)
    with backbone.autocast():
        out = m.forward_image(x)
        _, feats, _, sizes = m._prepare_backbone_features(out)
        if m.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + m.no_mem_embed
    maps = [f.permute(1, 2, 0).reshape(1, -1, *s).float() for f, s in zip(feats, sizes)]
    return ImageEmbedding(maps[-1], maps[:-1], picture.shape[:2])


def object_prompts(mask: np.ndarray, rng: np.random.Generator, clicks: int,
                   jitter: float) -> tuple[np.ndarray, np.ndarray]:
    """A jittered box ``(top, left, bottom, right)`` and ``clicks`` positive clicks inside ``mask``."""
    rows, cols = np.nonzero(mask)
    h, w = mask.shape
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    dy, dx = jitter * (bottom - top + 1), jitter * (right - left + 1)
    box = np.array([top, left, bottom, right], float) + rng.uniform(-1, 1, 4) * [dy, dx, dy, dx]
    box = np.clip(box, 0, [h - 1, w - 1, h - 1, w - 1])
    box[2], box[3] = max(box[2], box[0]), max(box[3], box[1])
    pick = rng.choice(len(rows), size=clicks, replace=len(rows) < clicks)
    return box, np.stack([rows[pick], cols[pick]], axis=-1).astype(float)


def adapter_loss(backbone: SAM2Backbone, emb: ImageEmbedding, masks: list[np.ndarray],
                 prompts: list[tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
    """Dice + BCE of SAM2's low-res logits for each object's box-and-clicks prompt."""
    dev = backbone.device
    pts, labs = [], []
    for box, clicks in prompts:
        xy = np.concatenate([box_to_normalized(box, emb.image_hw), pixels_to_normalized(clicks, emb.image_hw)])
        pts.append(xy)
        labs.append([2, 3] + [1] * len(clicks))
    xy = torch.as_tensor(np.stack(pts), dtype=torch.float32, device=dev)
    logits, _ = backbone.decode(emb, xy, torch.as_tensor(labs, device=dev), multimask=False)
    target = torch.as_tensor(np.stack(masks), dtype=torch.float32, device=dev)[:, None]
    target = F.interpolate(target, size=logits.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * target).sum((1, 2)) + 1) / (prob.sum((1, 2)) + target.sum((1, 2)) + 1)
    return dice.mean() + F.binary_cross_entropy_with_logits(logits, target)


def finetune_adapters(
    backbone: SAM2Backbone,
    stack: AnnotatedStack,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    progress: jobs.Progress | None = None,
    on_epoch: Callable[[FinetuneEpoch], None] | None = None,
    cancel: jobs.Cancel | None = None,
) -> list[FinetuneEpoch]:
    """Train the adapters hooked on ``backbone`` (``backbone.adapters``) on every object of ``stack``.

    ``progress("epoch", done, total)``; ``cancel()`` stops between slices with
    :class:`napari_rpsam2.jobs.Cancelled`.  The backbone's weights signature is
    renewed afterwards (the adapters changed).
    """
    adapters = backbone.adapters
    if adapters is None:
        raise ValueError("attach adapters to the backbone first (backbone.use_adapters)")
    rng = np.random.default_rng(config.seed)
    opt = torch.optim.AdamW(adapters.parameters(), lr=config.lr, weight_decay=1e-4)
    pictures = [encoder_picture(np.asarray(stack.images[i]), stack.contrast_limits, stack.gamma, stack.rgb)
                for i in range(len(stack))]
    by_slice: dict[int, list[np.ndarray]] = {}
    for obj in stack.objects():
        by_slice.setdefault(obj.slice_index, []).append(stack.object_mask(obj))
    encoder_learns = adapters.config.encoder or adapters.config.neck
    frozen: dict[int, ImageEmbedding] = {}  # without encoder/neck adapters, each slice is encoded once
    history = []
    adapters.train()
    try:
        for epoch in range(1, config.epochs + 1):
            start, losses = time.perf_counter(), []
            for i in rng.permutation(sorted(by_slice)):
                jobs.check(cancel, "adapter fine-tuning")
                masks = by_slice[int(i)]
                if encoder_learns:
                    emb = encode_with_grad(backbone, pictures[int(i)])
                else:
                    emb = frozen.get(int(i)) or frozen.setdefault(int(i), backbone.encode(pictures[int(i)]))
                prompts = [object_prompts(m, rng, config.clicks, config.box_jitter) for m in masks]
                loss = adapter_loss(backbone, emb, masks, prompts)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            log = FinetuneEpoch(epoch, float(np.mean(losses)), time.perf_counter() - start)
            history.append(log)
            if on_epoch is not None:
                on_epoch(log)
            jobs.report(progress, "epoch", epoch, config.epochs)
    finally:
        adapters.eval()
        backbone.use_adapters(adapters, backbone.adapter_header)  # new weights: new signature
    return history
