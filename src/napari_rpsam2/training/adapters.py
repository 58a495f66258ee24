"""Fine-tuning SAM2's adapters with prompts drawn from the ground truth (SAM2 itself frozen).

Per slice: the encoder runs with gradients (the encoder and neck adapters
learn), and every object is prompted with its box (jittered by a few percent
of its size) and positive clicks drawn inside it; the loss is Dice + binary
cross-entropy between SAM2's low-res logits and the object's mask resized to
SAM2's 256² frame.  Without encoder or neck adapters each slice is encoded
once, without gradients.

The memory-attention adapters take part only in the video path: with
``FinetuneConfig.clips`` on they learn on short clips of consecutive slices
(:mod:`.memory_adapters`: ground-truth prompts on a clip's first slice, the
later slices tracked with SAM2's memory).  An epoch takes every image step and
every clip step once, in a random order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import jobs
from ..model.backbone import SAM2Backbone
from ..model.coords import pixels_to_normalized
from ..model.embedding import ImageEmbedding
from ..model.image_adapter import encoder_picture
from ..model.prompts import box_to_normalized
from .data import AnnotatedStack
from .memory_adapters import ClipTrainer, mask_loss, object_clips

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
    clips: bool = False
    """Also train on clips through SAM2's memory (how the memory-attention adapters learn)."""
    clip_length: int = 3
    """Slices per clip: the prompted one and those tracked after it."""


@dataclass
class FinetuneEpoch:
    """Mean loss of one pass over the slices."""

    epoch: int
    loss: float
    seconds: float
    clip_loss: float | None = None
    """Mean loss of the clip steps alone (``None`` without clips)."""


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
    return mask_loss(logits, masks)


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

    ``progress("epoch", done, total)``; ``cancel()`` stops between steps (slices, clips) with
    :class:`napari_rpsam2.jobs.Cancelled`.  The backbone's weights signature is
    renewed afterwards (the adapters changed).
    """
    adapters = backbone.adapters
    if adapters is None:
        raise ValueError("attach adapters to the backbone first (backbone.use_adapters)")
    image_path = adapters.config.encoder or adapters.config.decoder or adapters.config.neck
    if not (image_path or config.clips):
        raise ValueError("only memory-attention adapters, which learn on clips: switch clips on")
    rng = np.random.default_rng(config.seed)
    opt = torch.optim.AdamW(adapters.parameters(), lr=config.lr, weight_decay=1e-4)
    pictures = [encoder_picture(np.asarray(stack.images[i]), stack.contrast_limits, stack.gamma, stack.rgb)
                for i in range(len(stack))]
    steps = _image_steps(backbone, stack, pictures, rng, config) if image_path else []
    if config.clips:
        steps += _clip_steps(backbone, stack, pictures, rng, config)
    if not steps:
        raise ValueError("nothing to train on: no object, or no clip of two slices")
    history = []
    adapters.train()
    try:
        for epoch in range(1, config.epochs + 1):
            start, losses = time.perf_counter(), {False: [], True: []}
            for i in rng.permutation(len(steps)):
                jobs.check(cancel, "adapter fine-tuning")
                is_clip, step = steps[int(i)]
                loss = step()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses[is_clip].append(float(loss.detach()))
            clip_loss = float(np.mean(losses[True])) if losses[True] else None
            log = FinetuneEpoch(epoch, float(np.mean(losses[False] + losses[True])), time.perf_counter() - start,
                                clip_loss)
            history.append(log)
            if on_epoch is not None:
                on_epoch(log)
            jobs.report(progress, "epoch", epoch, config.epochs)
    finally:
        adapters.eval()
        backbone.use_adapters(adapters, backbone.adapter_header)  # new weights: new signature
    return history


Step = tuple[bool, Callable[[], torch.Tensor]]


def _image_steps(backbone: SAM2Backbone, stack: AnnotatedStack, pictures: list[np.ndarray],
                 rng: np.random.Generator, config: FinetuneConfig) -> list[Step]:
    """One step per annotated slice: every object prompted with its box and clicks."""
    by_slice: dict[int, list[np.ndarray]] = {}
    for obj in stack.objects():
        by_slice.setdefault(obj.slice_index, []).append(stack.object_mask(obj))
    adapters = backbone.adapters
    encoder_learns = adapters.config.encoder or adapters.config.neck
    frozen: dict[int, ImageEmbedding] = {}  # without encoder/neck adapters, each slice is encoded once

    def step(i: int) -> torch.Tensor:
        if encoder_learns:
            emb = encode_with_grad(backbone, pictures[i])
        else:
            emb = frozen.get(i) or frozen.setdefault(i, backbone.encode(pictures[i]))
        prompts = [object_prompts(m, rng, config.clicks, config.box_jitter) for m in by_slice[i]]
        return adapter_loss(backbone, emb, by_slice[i], prompts)

    return [(False, lambda i=i: step(i)) for i in sorted(by_slice)]


def _clip_steps(backbone: SAM2Backbone, stack: AnnotatedStack, pictures: list[np.ndarray],
                rng: np.random.Generator, config: FinetuneConfig) -> list[Step]:
    """One step per clip: ground-truth prompts on its first slice, the rest tracked with SAM2's memory."""
    adapters = backbone.adapters
    trainer = ClipTrainer(backbone, stack, pictures, keep_embeddings=not (adapters.config.encoder
                                                                          or adapters.config.neck))

    def step(clip) -> torch.Tensor:
        first = np.asarray(stack.labels[clip.slices[0]]) == clip.object_id
        box, clicks = object_prompts(first, rng, config.clicks, config.box_jitter)
        return trainer.loss(clip, box, clicks)

    return [(True, lambda c=c: step(c)) for c in object_clips(stack, config.clip_length)]
