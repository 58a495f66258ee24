"""Train the shift block with the compound loss (docs/method.md, "Loss" and "Training").

The backbone is frozen and in ``eval()``.  Embeddings and candidate sets are
computed once (:func:`prepare_slices`) and reused every step.  A step runs,
per image, the shift block's image context (with gradients), the refinement
and SAM2's mask decoder (differentiable, ``multimask=True`` keeping the best
predicted-IoU mask as at inference).  **The Dice loss is computed at SAM2's
low resolution**: the low-res logits (256×256 at SAM2's 1024 input) against the object
mask resized to the same frame, so a step costs about what the decoder alone costs.

Resume and reproducibility: the clicks of epoch ``e`` come from
``numpy.random.default_rng([seed, e, rank])`` and nothing else is random, so a
run resumed from ``<out>.last.safetensors`` (weights + AdamW state) gives the
same result as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .. import jobs
from ..evaluation.protocol import evaluate
from ..jobs import Cancelled
from ..model.checkpoint import load_checkpoint, read_header, save_checkpoint
from ..model.coords import pixels_to_normalized
from ..model.embedding import ImageEmbedding
from ..model.embedding_cache import slice_signature
from . import ddp
from .candidates import CandidateCache
from .data import AnnotatedStack, DataError
from .losses import ObjectShape, distance_loss, object_shape, outside_loss, soft_dice_loss
from .optimizer import make_optimizer, optimizer_tensors, restore_optimizer

__all__ = ["TrainConfig", "EpochLog", "TrainResult", "ObjectTarget", "SliceTargets", "prepare_slices",
           "training_step", "train_shift_block", "last_checkpoint_path", "make_optimizer"]



@dataclass
class TrainConfig:
    """Training settings (defaults follow the paper; ``eval_clicks`` seeds for validation)."""

    epochs: int = 1500
    lr: float = 1e-4
    batch_size: int = 4
    clicks_per_object: int = 10
    alpha: float = 1.0
    beta: float = 0.1
    gamma: float = 1.0
    theta: float = 15.0
    epsilon: float = 0.005
    seed: int = 0
    grid_stride: int | None = None
    eval_clicks: int = 10
    weight_decay: float = 0.01
    out_temperature: float = 2.0


@dataclass
class EpochLog:
    """One line of the training log."""

    epoch: int
    loss: float
    dice_loss: float
    dist_loss: float
    out_loss: float
    val_mdsc: float | None
    val_mhd95: float | None
    is_best: bool
    seconds: float


@dataclass
class TrainResult:
    """What a training run left behind."""

    checkpoint: Path | None
    best_epoch: int
    history: list[EpochLog] = field(default_factory=list)
    cancelled: bool = False


@dataclass
class ObjectTarget:
    """Everything the loss needs about one object (computed once)."""

    inside: np.ndarray  # (A, 2) int32 pixels (row, col) to draw clicks from
    candidates: torch.Tensor  # (M, 2) normalized (x, y)
    target: torch.Tensor  # (L, L) float mask in SAM2's low-res frame (L = backbone.low_res_size, 256 at 1024)
    shape: ObjectShape  # the object at full resolution, for L_out


@dataclass
class SliceTargets:
    """One training image: its embedding and its objects."""

    index: int
    embedding: ImageEmbedding
    objects: list[ObjectTarget]


def last_checkpoint_path(out: str | os.PathLike) -> Path:
    """``<out>.last.safetensors``: the resumable checkpoint written every epoch."""
    out = Path(out)
    stem = out.name[: -len(".safetensors")] if out.name.endswith(".safetensors") else out.name
    return out.with_name(stem + ".last.safetensors")


def _object_target(mask: np.ndarray, grid, config: TrainConfig, device: torch.device, low_res: int) -> ObjectTarget:
    hw = mask.shape
    low = F.interpolate(torch.as_tensor(mask, dtype=torch.float32)[None, None], size=(low_res, low_res),
                        mode="bilinear", align_corners=False, antialias=True)[0, 0]
    cands = pixels_to_normalized(grid.candidates(config.epsilon), hw)
    return ObjectTarget(np.argwhere(mask).astype(np.int32),
                        torch.as_tensor(cands, dtype=torch.float32, device=device),
                        low.to(device), object_shape(mask, device))


def prepare_slices(model, stack: AnnotatedStack, config: TrainConfig, *, indices=None,
                   candidate_cache: CandidateCache | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None) -> list[SliceTargets]:
    """Embeddings and candidate sets of the slices (with objects) of ``stack``.

    ``progress(stage, done, total)`` with stage ``"embeddings"`` then
    ``"candidates"``; raises :class:`Cancelled` when ``cancel()`` turns true.
    """
    objects = stack.objects()
    chosen = sorted({o.slice_index for o in objects}) if indices is None else list(indices)
    embeddings = {}
    for done, i in enumerate(chosen, 1):
        if cancel is not None and cancel():
            raise Cancelled("training was cancelled while embedding")
        embeddings[i] = model.embed(np.asarray(stack.images[i]), contrast_limits=stack.contrast_limits,
                                    gamma=stack.gamma, rgb=stack.rgb)
        if progress is not None:
            progress("embeddings", done, len(chosen))
    todo = [o for o in objects if o.slice_index in embeddings]
    per_slice: dict[int, list[ObjectTarget]] = {i: [] for i in chosen}
    signatures: dict[int, str] = {}
    cache = candidate_cache if candidate_cache is not None else CandidateCache()
    for done, obj in enumerate(todo, 1):
        if cancel is not None and cancel():
            raise Cancelled("training was cancelled while computing candidates")
        i = obj.slice_index
        if i not in signatures:
            signatures[i] = slice_signature(np.asarray(stack.images[i]), stack.contrast_limits, stack.gamma,
                                            stack.rgb)
        mask = stack.object_mask(obj)
        grid = cache.grid_dice(model, embeddings[i], mask, image_signature=signatures[i],
                               object_id=obj.object_id, stride=config.grid_stride, refine=False)
        per_slice[i].append(_object_target(mask, grid, config, model.device, model.backbone.low_res_size))
        if progress is not None:
            progress("candidates", done, len(todo))
    return [SliceTargets(i, embeddings[i], per_slice[i]) for i in chosen if per_slice[i]]


def training_step(model, batch: list[SliceTargets], config: TrainConfig, rng: np.random.Generator) -> dict:
    """Forward and backward for one batch of images (gradients accumulate; no optimizer step).

    The loss is the mean over all clicks of ``α·dice + β·dist + γ·out``.  The
    Dice term goes through the frozen decoder a few clicks at a time
    (``backbone.click_chunk_size``: on a CPU, small batches are about twice
    as fast per click and bound the memory); its gradient with respect to the
    refined clicks is collected and pushed through the shift block once, with
    the distance and outside terms.  Returns the batch's loss terms.
    """
    block, backbone = model.shift_block, model.backbone
    k = config.clicks_per_object
    total_clicks = sum(len(s.objects) for s in batch) * k
    sums = {"loss": 0.0, "dice_loss": 0.0, "dist_loss": 0.0, "out_loss": 0.0}
    for item in batch:
        emb = item.embedding
        rows = [obj.inside[rng.integers(len(obj.inside), size=k)] for obj in item.objects]
        clicks = torch.as_tensor(pixels_to_normalized(np.concatenate(rows), emb.image_hw),
                                 dtype=torch.float32, device=model.device)
        refined = model.refine_normalized(emb, clicks, block.image_context(emb.image_embed))
        moved = refined.detach().requires_grad_(True)
        owner = torch.arange(len(item.objects), device=model.device).repeat_interleave(k)
        targets = torch.stack([obj.target for obj in item.objects])
        dice = torch.empty(len(owner), device=model.device)
        for start in range(0, len(owner), backbone.click_chunk_size):
            part = slice(start, start + backbone.click_chunk_size)
            ones = torch.ones((len(owner[part]), 1), dtype=torch.int, device=model.device)
            logits, _ = backbone.decode(emb, moved[part].unsqueeze(1), ones, True)
            per_click = soft_dice_loss(logits, targets[owner[part]])
            (per_click.sum() * (config.alpha / total_clicks)).backward()
            dice[part] = per_click.detach()
        rest = refined.new_zeros(())
        for j, obj in enumerate(item.objects):
            pts = refined[j * k:(j + 1) * k]
            dist = distance_loss(pts, obj.candidates, config.theta)
            out = outside_loss(pts, obj.shape, config.out_temperature)
            rest = rest + (config.beta * dist.sum() + config.gamma * out.sum()) / total_clicks
            sums["dist_loss"] += float(dist.detach().sum()) / total_clicks
            sums["out_loss"] += float(out.detach().sum()) / total_clicks
        # d(dice term)/d(block) = moved.grad · d(refined)/d(block): one backward through the block
        (rest + (refined * moved.grad).sum()).backward()
        sums["dice_loss"] += float(dice.sum()) / total_clicks
    sums["loss"] = (config.alpha * sums["dice_loss"] + config.beta * sums["dist_loss"]
                    + config.gamma * sums["out_loss"])
    return sums


# ------------------------------------------------------------------ checkpoints
def _copy_state(block: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in block.state_dict().items()}


@dataclass
class _RunState:
    """Where a run stands: the next epoch, the best epoch so far and its weights, the history."""

    epoch: int
    best_epoch: int
    best_score: float
    best_state: dict[str, torch.Tensor]
    history: list[EpochLog]


def _start_state(model, optimizer, resume, out: Path) -> _RunState:
    """A fresh run, or the state saved in a ``.last`` checkpoint (weights and AdamW state restored)."""
    block = model.shift_block
    if resume is None:
        return _RunState(0, 0, -math.inf, _copy_state(block), [])
    saved, header, extras = load_checkpoint(resume, backbone=model.backbone.name)
    block.load_state_dict(saved.state_dict())
    restore_optimizer(optimizer, extras)
    info = header.get("training", {})
    epoch = int(info.get("epoch", 0))
    state = _RunState(epoch, int(info.get("best_epoch", epoch)), float(info.get("best_score", -math.inf)),
                      _copy_state(block), [EpochLog(**h) for h in info.get("history", [])])
    if state.best_epoch != epoch and out.exists() and read_header(out).get("training", {}).get("epoch") == \
            state.best_epoch:
        state.best_state = _copy_state(load_checkpoint(out, backbone=model.backbone.name)[0])
    return state


def _train_epoch(model, optimizer, mine: list[SliceTargets], steps: int, config: TrainConfig, epoch: int,
                 rank: int, cancel) -> np.ndarray | None:
    """One pass over this process's slices; mean loss terms, or ``None`` when cancelled."""
    rng = np.random.default_rng([config.seed, epoch, rank])
    order = rng.permutation(len(mine))
    sums = np.zeros(4)
    for step in range(steps):
        if ddp.any_rank(cancel is not None and bool(cancel()), model.device):
            return None
        optimizer.zero_grad(set_to_none=True)
        batch = [mine[i] for i in order[step * config.batch_size:(step + 1) * config.batch_size]]
        terms = training_step(model, batch, config, rng) if batch else dict.fromkeys(
            ("loss", "dice_loss", "dist_loss", "out_loss"), 0.0)
        ddp.average_gradients(model.shift_block.parameters())
        optimizer.step()
        sums += np.array([terms["loss"], terms["dice_loss"], terms["dist_loss"], terms["out_loss"]]) / steps
    return sums


def _validate(model, val: AnnotatedStack | None, config: TrainConfig, cancel) -> tuple[float | None, float | None]:
    """Validation mDSC and mHD95 of the block as it is (``Cancelled`` when stopped meanwhile)."""
    if val is None:
        return None, None
    block = model.shift_block
    block.eval()
    try:
        report = evaluate(model, val, clicks=config.eval_clicks, methods=("rpsam2",), cancel=cancel)
    finally:
        block.train()
    return report["rpsam2"]["mDSC"]["mean"], report["rpsam2"]["mHD95"]["mean"]


def _keep_epoch(model, optimizer, state: _RunState, log: EpochLog, out: Path, summary: dict,
                log_file: Path | None) -> None:
    """Write the best checkpoint (when it is), the ``.last`` one and the log line of a finished epoch."""
    block, epoch = model.shift_block, log.epoch
    metrics = {"train_loss": log.loss, "val_mDSC": log.val_mdsc, "val_mHD95": log.val_mhd95}
    state.history.append(log)
    if log.is_best:
        state.best_epoch, state.best_state = epoch, _copy_state(block)
        save_checkpoint(out, block, model.backbone.name, metrics=metrics,
                        training={**summary, "epoch": epoch, "epochs": epoch, "best_epoch": epoch})
    save_checkpoint(last_checkpoint_path(out), block, model.backbone.name, metrics=metrics,
                    training={**summary, "epoch": epoch, "epochs": epoch, "best_epoch": state.best_epoch,
                              "best_score": state.best_score, "history": [asdict(h) for h in state.history]},
                    extra_tensors=optimizer_tensors(optimizer))
    if log_file is not None:
        with open(log_file, "a") as fh:
            fh.write(json.dumps(asdict(log)) + "\n")


# ------------------------------------------------------------------ the loop
def train_shift_block(
    model,
    train: AnnotatedStack,
    out: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    *,
    val: AnnotatedStack | None = None,
    resume: str | os.PathLike | None = None,
    log_path: str | os.PathLike | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    candidate_cache: CandidateCache | None = None,
) -> TrainResult:
    """Train ``model.shift_block`` on ``train``; keep the best checkpoint at ``out``.

    Parameters
    ----------
    model : RPSAM2
        Its backbone stays frozen; its shift block is trained in place.
    train, val : AnnotatedStack
        Training data and optional validation data (best = highest val mDSC;
        without ``val``, lowest training loss).
    out : path
        Best checkpoint (``.safetensors``); ``<out>.last.safetensors`` is
        written each epoch with the optimizer state for ``resume``.
    config : TrainConfig
    resume : path, optional
        A ``.last`` checkpoint to continue from (a best checkpoint also works,
        with a fresh optimizer).
    log_path : path, optional
        JSON-lines log, one line per epoch (appended on resume).
    progress : callable(stage, done, total), optional
        Stages ``"embeddings"``, ``"candidates"``, ``"epoch"``.
    on_epoch : callable(EpochLog), optional
    cancel : callable() -> bool, optional
        Checked before every step; the last written checkpoints stay intact.

    Returns
    -------
    TrainResult
        Afterwards ``model.shift_block`` holds the best weights.
    """
    rank, world = ddp.rank_and_world()
    out = Path(out)
    if rank == 0 and not out.parent.is_dir():
        raise DataError(f"cannot write the checkpoint: folder {out.parent} does not exist")
    block = model.shift_block
    optimizer = make_optimizer(block, config)
    state = _start_state(model, optimizer, resume, out)
    try:
        slices = prepare_slices(model, train, config, candidate_cache=candidate_cache, progress=progress,
                                cancel=cancel)
    except Cancelled:
        slices = None
    if slices is not None and not slices:
        raise DataError("the training data have no objects; paint at least one object")
    mine = ddp.shard(slices or [], rank, world)
    steps = math.ceil(math.ceil(len(slices or []) / world) / config.batch_size)
    log_file = Path(log_path) if log_path is not None else None
    if rank == 0 and log_file is not None and resume is None and log_file.exists():
        log_file.unlink()
    summary = {"data": train.summary(), "val_data": val.summary() if val is not None else None,
               "config": asdict(config), "world_size": world}
    block.train()
    stopped = slices is None
    while not stopped and state.epoch < config.epochs:
        began = time.perf_counter()
        sums = _train_epoch(model, optimizer, mine, steps, config, state.epoch, rank, cancel)
        if sums is None:
            stopped = True
            break
        loss, dice_l, dist_l, out_l = ddp.all_reduce_mean(sums.tolist(), model.device)
        state.epoch += 1
        if rank == 0:
            try:
                # under DDP the other ranks wait at the barrier: only a single process may stop mid-validation
                val_mdsc, val_mhd95 = _validate(model, val, config, cancel if world == 1 else None)
            except Cancelled:  # stopped during validation: this epoch is not kept
                stopped = True
                break
            score = val_mdsc if val_mdsc is not None else -loss
            log = EpochLog(state.epoch, loss, dice_l, dist_l, out_l, val_mdsc, val_mhd95, score > state.best_score,
                           time.perf_counter() - began)
            state.best_score = max(state.best_score, score)
            _keep_epoch(model, optimizer, state, log, out, summary, log_file)
            if on_epoch is not None:
                on_epoch(log)
        ddp.barrier()
        jobs.report(progress, "epoch", state.epoch, config.epochs)
    block.load_state_dict(state.best_state)
    header = read_header(out) if rank == 0 and out.exists() else model.shift_block_header
    model.set_shift_block(block, header)
    return TrainResult(out if out.exists() else None, state.best_epoch, state.history, stopped)
