"""Train the shift block with the compound loss (docs/method.md, "Loss" and "Training").

The backbone is frozen and in ``eval()``.  Embeddings and candidate sets are
computed once per slice (:mod:`.prepare`) into a folder on disk
(:class:`~.slice_store.SliceStore`: the embedding cache's folder, or a
temporary one) and each step reads only its batch's slices back, so memory
does not grow with the number of training slices.  A step runs, per image,
the shift block's image context (with gradients), the refinement and SAM2's
mask decoder (differentiable, ``multimask=True`` keeping the best
predicted-IoU mask as at inference).  **The Dice loss is computed at SAM2's
low resolution**: the low-res logits (256×256 at SAM2's 1024 input) against the object
mask resized to the same frame, so a step costs about what the decoder alone costs.

Under ``torchrun`` (:mod:`.ddp`) each process prepares its share of the
slices, the block is wrapped in ``DistributedDataParallel``, each epoch's
shards come from a seeded ``DistributedSampler`` and the loss is divided by
the number of clicks of the whole step, so the update does not depend on how
the batch was split between processes.

Resume and reproducibility: the clicks on slice ``i`` in epoch ``e`` come from
``numpy.random.default_rng([seed, e, i])`` and nothing else is random, so a
run resumed from ``<out>.last.safetensors`` (weights + AdamW state) gives the
same result as an uninterrupted one, on any number of processes.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import jobs
from ..evaluation.protocol import evaluate
from ..jobs import Cancelled
from ..model.checkpoint import read_header
from ..model.coords import clamp_straight_through, pixels_to_normalized
from . import ddp
from .candidates import CandidateCache
from .data import AnnotatedStack, DataError
from .losses import distance_loss, outside_loss, soft_dice_loss
from .optimizer import make_optimizer
from .prepare import LOW_RES, Preparer, object_target, prep_shard, training_indices
from .run_state import EpochLog, keep_epoch, last_checkpoint_path, refuse_replacing, start_state
from .slice_store import ObjectTarget, SliceStore, SliceTargets

__all__ = ["TrainConfig", "EpochLog", "TrainResult", "ObjectTarget", "SliceTargets", "prepare_slices",
           "training_step", "train_shift_block", "last_checkpoint_path", "make_optimizer", "refuse_replacing",
           "LOW_RES"]

_object_target = object_target  # the name older callers use


@dataclass
class TrainConfig:
    """Training settings (defaults follow the paper; ``eval_clicks`` seeds for validation).

    ``batch_size`` is per process: under ``torchrun`` a step sees
    ``batch_size × processes`` slices.
    """

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
class TrainResult:
    """What a training run left behind (``prepared``: this process's encoder runs and reuses)."""

    checkpoint: Path | None
    best_epoch: int
    history: list[EpochLog] = field(default_factory=list)
    cancelled: bool = False
    prepared: dict = field(default_factory=dict)


def prepare_slices(model, stack: AnnotatedStack, config: TrainConfig, *, indices=None,
                   candidate_cache: CandidateCache | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None) -> list[SliceTargets]:
    """Embeddings and candidate sets of the slices (with objects) of ``stack``, all in memory.

    For tests and benchmarks on a few slices; training itself streams them
    from disk.  ``progress(stage, done, total)`` with stage ``"embeddings"``
    then ``"candidates"``; raises :class:`Cancelled` when ``cancel()`` turns true.
    """
    chosen = training_indices(stack) if indices is None else list(indices)
    with tempfile.TemporaryDirectory(prefix="rpsam2-train-") as folder:
        prep = Preparer(model, stack, config, SliceStore(folder), candidate_cache)
        refs = [prep.ref(i) for i in chosen if prep.objects_of(i)]
        prep.prepare(refs, progress=progress, cancel=cancel)
        return [prep.load(r) for r in refs]


class _Refiner(torch.nn.Module):
    """The shift block's refinement of one image's clicks as one ``forward`` (what DDP wraps)."""

    def __init__(self, block: torch.nn.Module, backbone) -> None:
        super().__init__()
        self.block = block
        self.__dict__["backbone"] = backbone  # frozen: not a submodule, DDP leaves it alone

    def forward(self, image_embed: torch.Tensor, points_xy: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        context = self.block.image_context(image_embed)
        moved = self.block(points_xy, self.backbone.point_tokens(points_xy), context)
        return clamp_straight_through(moved, image_hw)


def _idle_step(refiner: torch.nn.Module, block, device) -> None:
    """A zero gradient through ``refiner``: a process with an empty batch still joins the all-reduce."""
    tokens, dim = block.image_pos.shape
    side = int(round(math.sqrt(tokens)))
    embed = torch.zeros((1, dim, side, tokens // side), device=device)
    out = refiner(embed, torch.full((1, 2), 0.5, device=device), (side, side))
    (out.sum() * 0.0).backward()


def training_step(model, batch: list[SliceTargets], config: TrainConfig, rng, *, total_clicks: int | None = None,
                  refiner: torch.nn.Module | None = None, grad_scale: float = 1.0) -> dict:
    """Forward and backward for one batch of images (gradients accumulate; no optimizer step).

    ``rng`` is one generator, or one per image.  The loss is the mean over
    ``total_clicks`` (default: this batch's clicks; under DDP the whole
    step's) of ``α·dice + β·dist + γ·out``; gradients are multiplied by
    ``grad_scale`` (the world size, which DDP's averaging divides out).  The
    Dice term goes through the frozen decoder a few clicks at a time
    (``backbone.click_chunk_size``: on a CPU, small batches are about twice
    as fast per click and bound the memory); its gradient with respect to the
    refined clicks is collected and pushed through the shift block once, with
    the distance and outside terms.  Returns the batch's loss terms.
    """
    backbone = model.backbone
    refiner = refiner if refiner is not None else _Refiner(model.shift_block, backbone)
    k = config.clicks_per_object
    total_clicks = total_clicks or sum(len(s.objects) for s in batch) * k
    rngs = rng if isinstance(rng, (list, tuple)) else [rng] * len(batch)
    sums = {"loss": 0.0, "dice_loss": 0.0, "dist_loss": 0.0, "out_loss": 0.0}
    for pos, (item, gen) in enumerate(zip(batch, rngs)):
        with ddp.sync_unless_last(refiner, pos == len(batch) - 1):
            _image_step(model, refiner, item, gen, config, total_clicks, grad_scale, sums)
    sums["loss"] = (config.alpha * sums["dice_loss"] + config.beta * sums["dist_loss"]
                    + config.gamma * sums["out_loss"])
    return sums


def _image_step(model, refiner, item: SliceTargets, rng, config: TrainConfig, total_clicks: int, grad_scale: float,
                sums: dict) -> None:
    """Forward and backward of one image's clicks; adds its loss terms to ``sums``."""
    backbone, k = model.backbone, config.clicks_per_object
    emb = item.embedding
    rows = [obj.inside[rng.integers(len(obj.inside), size=k)] for obj in item.objects]
    clicks = torch.as_tensor(pixels_to_normalized(np.concatenate(rows), emb.image_hw),
                             dtype=torch.float32, device=model.device)
    refined = refiner(emb.image_embed, clicks, emb.image_hw)
    moved = refined.detach().requires_grad_(True)
    owner = torch.arange(len(item.objects), device=model.device).repeat_interleave(k)
    targets = torch.stack([obj.target for obj in item.objects])
    dice = torch.empty(len(owner), device=model.device)
    for start in range(0, len(owner), backbone.click_chunk_size):
        part = slice(start, start + backbone.click_chunk_size)
        ones = torch.ones((len(owner[part]), 1), dtype=torch.int, device=model.device)
        logits, _ = backbone.decode(emb, moved[part].unsqueeze(1), ones, True)
        per_click = soft_dice_loss(logits, targets[owner[part]])
        (per_click.sum() * (config.alpha * grad_scale / total_clicks)).backward()
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
    (rest * grad_scale + (refined * moved.grad).sum()).backward()
    sums["dice_loss"] += float(dice.sum()) / total_clicks


def _train_epoch(model, refiner, optimizer, prep: Preparer, refs: list, config: TrainConfig, epoch: int,
                 cancel) -> np.ndarray | None:
    """One pass over this epoch's shard; the loss terms summed over the job, or ``None`` when cancelled.

    Only the current batch's slices are read from the store (and held).
    """
    rank, world = ddp.rank_and_world()
    mine = ddp.epoch_shard(len(refs), rank, world, config.seed, epoch)
    steps = math.ceil(math.ceil(len(refs) / world) / config.batch_size)
    k = config.clicks_per_object
    sums = np.zeros(4)
    for step in range(steps):
        if ddp.any_rank(cancel is not None and bool(cancel()), model.device):
            return None
        optimizer.zero_grad(set_to_none=True)
        batch = [prep.load(refs[i]) for i in mine[step * config.batch_size:(step + 1) * config.batch_size]]
        clicks = int(ddp.all_reduce_sum([sum(len(s.objects) for s in batch) * k], model.device)[0])
        if batch:
            rngs = [np.random.default_rng([config.seed, epoch, s.index]) for s in batch]
            terms = training_step(model, batch, config, rngs, total_clicks=clicks, refiner=refiner,
                                  grad_scale=float(world))
            sums += np.array([terms["loss"], terms["dice_loss"], terms["dist_loss"], terms["out_loss"]])
        else:  # nothing left on this process: a zero gradient keeps the job's average over what was seen
            _idle_step(refiner, model.shift_block, model.device)
        del batch
        optimizer.step()
    return np.array(ddp.all_reduce_sum(sums.tolist(), model.device)) / steps


def _val_share(val: AnnotatedStack) -> AnnotatedStack | None:
    """This process's share of the validation slices (``None`` when it has none)."""
    rank, world = ddp.rank_and_world()
    mine = prep_shard(training_indices(val), rank, world)
    if not mine:
        return None
    return val if world == 1 else val.subset(mine)


def _embed_validation(model, val: AnnotatedStack | None, progress, cancel) -> None:
    """Embed this process's validation slices before the first epoch (stage ``"validation embeddings"``)."""
    share = _val_share(val) if val is not None else None
    if share is None:
        return
    chosen = training_indices(share)
    for done, i in enumerate(chosen, 1):
        if cancel is not None and cancel():
            raise Cancelled("training was cancelled while embedding the validation slices")
        model.embed(np.asarray(share.images[i]), contrast_limits=share.contrast_limits, gamma=share.gamma,
                    rgb=share.rgb)
        jobs.report(progress, "validation embeddings", done, len(chosen))


def _validate(model, val: AnnotatedStack | None, config: TrainConfig, cancel, progress
              ) -> tuple[float | None, float | None]:
    """Validation mDSC and mHD95 of the block as it is, each process on its share, object-weighted.

    ``Cancelled`` when stopped meanwhile (a single process only).
    """
    if val is None:
        return None, None
    share = _val_share(val)
    block = model.shift_block
    block.eval()
    sums = [0.0, 0.0, 0.0]
    try:
        if share is not None:
            report = evaluate(model, share, clicks=config.eval_clicks, methods=("rpsam2",), cancel=cancel,
                              progress=lambda d, t: jobs.report(progress, "validation", d, t))
            n = len(share.objects())
            sums = [n * report["rpsam2"]["mDSC"]["mean"], n * report["rpsam2"]["mHD95"]["mean"], float(n)]
    finally:
        block.train()
    dsc, hd, n = ddp.all_reduce_sum(sums, model.device)
    return (dsc / n, hd / n) if n else (None, None)


def _store_folder(model, store_dir) -> tuple[Path, bool]:
    """The folder training slices go to, and whether it is a temporary one of this run (shared by all ranks)."""
    if store_dir is not None:
        return Path(store_dir), False
    if model.cache.disk_dir is not None:
        return Path(model.cache.disk_dir), False
    rank, _ = ddp.rank_and_world()
    folder = tempfile.mkdtemp(prefix="rpsam2-train-") if rank == 0 else None
    return Path(ddp.broadcast_object(folder)), True


def _check_first(out: Path, resume, overwrite: bool) -> None:
    """Refuse a bad output before any work, on every process (all of them stop together)."""
    error = None
    try:
        if not out.parent.is_dir():
            raise DataError(f"cannot write the checkpoint: folder {out.parent} does not exist")
        refuse_replacing(out, resume=resume, overwrite=overwrite)
    except DataError as err:
        error = err
    ddp.agree(error)


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
    overwrite: bool = False,
    store_dir: str | os.PathLike | None = None,
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
        written each epoch with the optimizer state for ``resume``.  An
        existing checkpoint of another run is refused (:class:`DataError`)
        unless ``overwrite``.
    config : TrainConfig
    resume : path, optional
        A ``.last`` checkpoint to continue from (a best checkpoint also works,
        with a fresh optimizer).
    log_path : path, optional
        JSON-lines log, one line per epoch (appended on resume).
    progress : callable(stage, done, total), optional
        Stages ``"embeddings"``, ``"candidates"``, ``"validation embeddings"``,
        ``"validation"`` and ``"epoch"``.
    on_epoch : callable(EpochLog), optional
    cancel : callable() -> bool, optional
        Checked before every step; the last written checkpoints stay intact.
    store_dir : path, optional
        Where the training slices are written (default: the model's disk
        cache folder, else a temporary folder removed afterwards).

    Returns
    -------
    TrainResult
        Afterwards ``model.shift_block`` holds the best weights.
    """
    rank, world = ddp.rank_and_world()
    out = Path(out)
    _check_first(out, resume, overwrite)
    block = model.shift_block
    optimizer = make_optimizer(block, config)
    state = start_state(model, optimizer, resume, out)
    folder, temporary = _store_folder(model, store_dir)
    finished = False
    try:
        prep = Preparer(model, train, config, SliceStore(folder), candidate_cache)
        refs = [prep.ref(i) for i in training_indices(train)]
        if not refs:
            raise DataError("the training data have no objects; paint at least one object")
        stopped = _prepare(prep, refs, val, model, progress, cancel)
        result = TrainResult(None, state.best_epoch, state.history, stopped, dict(prep.counts))
        if not stopped:
            result.cancelled = _epochs(model, optimizer, prep, refs, state, out, config, val, resume, log_path,
                                       progress, on_epoch, cancel, world)
        finished = True
    finally:
        if finished:  # after an error, the other processes may be inside another collective: no barrier
            ddp.barrier()
        if temporary and rank == 0:
            shutil.rmtree(folder, ignore_errors=True)
    block.load_state_dict(state.best_state)
    header = read_header(out) if rank == 0 and out.exists() else model.shift_block_header
    model.set_shift_block(block, header)
    result.checkpoint, result.best_epoch, result.history = (out if out.exists() else None), state.best_epoch, \
        state.history
    return result


def _prepare(prep: Preparer, refs: list, val, model, progress, cancel) -> bool:
    """This process's share of the slices into the store, validation embeddings; ``True`` when cancelled.

    An error on any process stops all of them with its message.
    """
    rank, world = ddp.rank_and_world()
    error, stopped = None, False
    try:
        prep.prepare(prep_shard(refs, rank, world), progress=progress, cancel=cancel)
        _embed_validation(model, val, progress, cancel)
    except Cancelled:
        stopped = True
    except Exception as err:  # noqa: BLE001 - handed to every process, then re-raised
        error = err
    ddp.agree(error)
    return ddp.any_rank(stopped, model.device)


def _epochs(model, optimizer, prep, refs, state, out: Path, config: TrainConfig, val, resume, log_path, progress,
            on_epoch, cancel, world: int) -> bool:
    """The epoch loop; ``True`` when cancelled."""
    rank = ddp.rank_and_world()[0]
    log_file = Path(log_path) if log_path is not None else None
    if rank == 0 and log_file is not None and resume is None and log_file.exists():
        log_file.unlink()
    summary = {"data": prep.stack.summary(), "val_data": val.summary() if val is not None else None,
               "config": asdict(config), "world_size": world}
    block = model.shift_block
    refiner = ddp.wrap(_Refiner(block, model.backbone), model.device)
    block.train()
    while state.epoch < config.epochs:
        began = time.perf_counter()
        sums = _train_epoch(model, refiner, optimizer, prep, refs, config, state.epoch, cancel)
        if sums is None:
            return True
        loss, dice_l, dist_l, out_l = sums.tolist()
        try:
            # under DDP every process validates its share; only a single process may stop mid-validation
            val_mdsc, val_mhd95 = _validate(model, val, config, cancel if world == 1 else None, progress)
        except Cancelled:  # stopped during validation: this epoch is not kept
            return True
        state.epoch += 1
        if rank == 0:
            score = val_mdsc if val_mdsc is not None else -loss
            log = EpochLog(state.epoch, loss, dice_l, dist_l, out_l, val_mdsc, val_mhd95, score > state.best_score,
                           time.perf_counter() - began)
            state.best_score = max(state.best_score, score)
            keep_epoch(model, optimizer, state, log, out, summary, log_file)
            if on_epoch is not None:
                on_epoch(log)
        ddp.barrier()
        jobs.report(progress, "epoch", state.epoch, config.epochs)
    return False
