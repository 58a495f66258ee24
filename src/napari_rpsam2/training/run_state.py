"""Where a training run stands, and the checkpoints it writes (a part of :mod:`.trainer`).

A run is named by a random ``run`` id in its checkpoints' header; resuming
keeps it.  :func:`refuse_replacing` is the rule that no run replaces the
checkpoint of another one unless asked to (``overwrite``).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..model.checkpoint import load_checkpoint, read_header, save_checkpoint
from .data import DataError
from .optimizer import optimizer_tensors, restore_optimizer

__all__ = ["EpochLog", "RunState", "last_checkpoint_path", "refuse_replacing", "start_state", "keep_epoch",
           "copy_state"]


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


def last_checkpoint_path(out: str | os.PathLike) -> Path:
    """``<out>.last.safetensors``: the resumable checkpoint written every epoch."""
    out = Path(out)
    stem = out.name[: -len(".safetensors")] if out.name.endswith(".safetensors") else out.name
    return out.with_name(stem + ".last.safetensors")


def _run_id(path: Path) -> str | None:
    try:
        return read_header(path).get("training", {}).get("run")
    except Exception:  # unreadable: not a checkpoint of a known run
        return None


def _same_run(resume: Path, out: Path) -> bool:
    """Whether ``resume`` continues the run whose checkpoints are at ``out``."""
    resume = Path(resume).resolve()
    if resume in (out.resolve(), last_checkpoint_path(out).resolve()):
        return True
    theirs = {_run_id(p) for p in (out, last_checkpoint_path(out)) if p.exists()} - {None}
    return bool(theirs) and _run_id(resume) in theirs


def refuse_replacing(out: str | os.PathLike, *, resume: str | os.PathLike | None = None,
                     overwrite: bool = False) -> None:
    """Raise :class:`DataError` (one line) when ``out`` or its ``.last`` file holds another run's checkpoint.

    Allowed: ``overwrite``, no such file, or ``resume`` continuing that same run.
    """
    out = Path(out)
    found = [p for p in (out, last_checkpoint_path(out)) if p.exists()]
    if overwrite or not found or (resume is not None and _same_run(Path(resume), out)):
        return
    raise DataError(f"{found[0]} already exists (a checkpoint of another run) and was left unchanged; choose "
                    f"another output, add --overwrite to replace it, or --resume {last_checkpoint_path(out)} "
                    "to continue that run")


def copy_state(block: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a module's weights."""
    return {k: v.detach().clone() for k, v in block.state_dict().items()}


@dataclass
class RunState:
    """Where a run stands: the next epoch, the best epoch so far and its weights, the history."""

    epoch: int
    best_epoch: int
    best_score: float
    best_state: dict[str, torch.Tensor]
    history: list[EpochLog]
    run: str


def start_state(model, optimizer, resume, out: Path) -> RunState:
    """A fresh run, or the state saved in a ``.last`` checkpoint (weights and AdamW state restored)."""
    block = model.shift_block
    if resume is None:
        return RunState(0, 0, -math.inf, copy_state(block), [], uuid.uuid4().hex)
    saved, header, extras = load_checkpoint(resume, backbone=model.backbone.name)
    block.load_state_dict(saved.state_dict())
    restore_optimizer(optimizer, extras)
    info = header.get("training", {})
    epoch = int(info.get("epoch", 0))
    state = RunState(epoch, int(info.get("best_epoch", epoch)), float(info.get("best_score", -math.inf)),
                     copy_state(block), [EpochLog(**h) for h in info.get("history", [])],
                     str(info.get("run") or uuid.uuid4().hex))
    if state.best_epoch != epoch and out.exists() and read_header(out).get("training", {}).get("epoch") == \
            state.best_epoch:
        state.best_state = copy_state(load_checkpoint(out, backbone=model.backbone.name)[0])
    return state


def keep_epoch(model, optimizer, state: RunState, log: EpochLog, out: Path, summary: dict,
               log_file: Path | None) -> None:
    """Write the best checkpoint (when it is), the ``.last`` one and the log line of a finished epoch."""
    block, epoch = model.shift_block, log.epoch
    metrics = {"train_loss": log.loss, "val_mDSC": log.val_mdsc, "val_mHD95": log.val_mhd95}
    summary = {**summary, "run": state.run}
    state.history.append(log)
    if log.is_best:
        state.best_epoch, state.best_state = epoch, copy_state(block)
        save_checkpoint(out, block, model.backbone.name, metrics=metrics,
                        training={**summary, "epoch": epoch, "epochs": epoch, "best_epoch": epoch})
    save_checkpoint(last_checkpoint_path(out), block, model.backbone.name, metrics=metrics,
                    training={**summary, "epoch": epoch, "epochs": epoch, "best_epoch": state.best_epoch,
                              "best_score": state.best_score, "history": [asdict(h) for h in state.history]},
                    extra_tensors=optimizer_tensors(optimizer))
    if log_file is not None:
        with open(log_file, "a") as fh:
            fh.write(json.dumps(asdict(log)) + "\n")
