"""``rpsam2 train``: a shift block from annotated images (also run by ``torchrun -m napari_rpsam2.cli train``)."""

from __future__ import annotations

import argparse
import math
import os
import sys

from .support import (
    ProgressBars,
    UsageError,
    cache_folder,
    data_options,
    existing_file,
    existing_path,
    make_model,
    model_options,
    output_file,
    sigint_cancel,
)

__all__ = ["add_parser", "cmd_train"]


def cmd_train(args: argparse.Namespace, base=None) -> int:
    if (args.val_images is None) != (args.val_labels is None):
        raise UsageError("give both --val-images and --val-labels, or neither")
    out = output_file(args.out, ".safetensors", "--out")
    cache = cache_folder(args.cache)
    from ..app.train import train
    from ..training import ddp
    from ..training.trainer import TrainConfig, refuse_replacing

    if args.resume is not None:
        existing_file(args.resume, "resume checkpoint")
    if args.log is not None:
        output_file(args.log, ".jsonl", "--log")
    refuse_replacing(out, resume=args.resume, overwrite=args.overwrite)  # on every process, before any work
    for name in ("epochs", "batch_size", "clicks", "val_clicks", "grid_stride"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        raise UsageError("--lr must be positive")
    val_fraction = getattr(args, "val_fraction", 0.2)
    if not 0 <= val_fraction < 1:
        raise UsageError("--val-fraction must be at least 0 and below 1")
    data = _training_data(args, val_fraction)
    rank, world = 0, 1
    if "RANK" in os.environ:  # started by torchrun: join its process group
        rank, world, args.device = ddp.init_from_env(args.device)
    if rank == 0:
        print(f"validation: {data.validation}", file=sys.stderr)
    model = make_model(args, base, cache_dir=cache)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         clicks_per_object=args.clicks, seed=args.seed, grid_stride=args.grid_stride,
                         eval_clicks=args.val_clicks)
    bars = ProgressBars(args.quiet)
    with sigint_cancel() as cancel:
        try:
            result = train(model, data, out, config, resume=args.resume, log_path=args.log, progress=bars,
                           on_epoch=_print_epoch, cancel=cancel, overwrite=args.overwrite).result
        finally:
            bars.close()
            ddp.leave_group()
    if world > 1:
        p = result.prepared
        print(f"process {rank} of {world}: encoded {p.get('encoded', 0)} slice(s), reused {p.get('reused', 0)}",
              file=sys.stderr)
    if rank != 0:
        return 0
    from ..training.trainer import last_checkpoint_path

    last = last_checkpoint_path(out)
    resume = f"; continue with --resume {last}" if last.exists() else ""
    if result.cancelled:
        best = f"best checkpoint {result.checkpoint} (epoch {result.best_epoch})" if result.checkpoint else \
            "no epoch finished, no checkpoint written"
        print(f"rpsam2: training cancelled after {len(result.history)} epoch(s); {best}{resume}", file=sys.stderr)
        return 130
    where = f" on {world} processes" if world > 1 else ""
    print(f"wrote {result.checkpoint} (best of {len(result.history)} epochs{where}: epoch {result.best_epoch})"
          f"{resume}")
    return 0


def _training_data(args: argparse.Namespace, val_fraction: float):
    """The training data of ``rpsam2 train`` (the same reader and split as the training dock)."""
    from ..app.train import data_from_folders

    img_dir = existing_path(args.images, "images")
    lab_dir = existing_path(args.labels, "labels")
    val_img = val_lab = None
    if args.val_images is not None:
        val_img = existing_path(args.val_images, "validation images")
        val_lab = existing_path(args.val_labels, "validation labels")
    if args.class_map is not None:
        existing_file(args.class_map, "class map")
    data = data_from_folders(img_dir, lab_dir, class_map=args.class_map, val_images_dir=val_img,
                             val_labels_dir=val_lab, val_fraction=val_fraction, seed=args.seed,
                             merge_gap=args.merge_gap, window=args.window)
    seen = [*data.train.warnings, *(data.val.warnings if data.val is not None else [])]
    for warning in dict.fromkeys(seen):  # a split copies the reader's warnings into both parts
        print(f"rpsam2: warning: {warning}", file=sys.stderr)
    return data


def _print_epoch(log) -> None:
    from tqdm.auto import tqdm

    val_txt = "" if log.val_mdsc is None or not math.isfinite(log.val_mdsc) else (
        f"  val mDSC {log.val_mdsc:.2f}% mHD95 {log.val_mhd95:.1f}px")
    tqdm.write(f"epoch {log.epoch}: loss {log.loss:.4f} "
               f"(dice {log.dice_loss:.4f}, dist {log.dist_loss:.4f}, out {log.out_loss:.4f}){val_txt}"
               f"{'  *best' if log.is_best else ''}  [{log.seconds:.1f}s]")


def add_parser(sub) -> None:
    """Register ``train`` on the ``rpsam2`` subcommand parsers."""
    sp = sub.add_parser("train", help="train a shift block on annotated images")
    model_options(sp)
    data_options(sp)
    sp.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    sp.add_argument("--val-images", default=None)
    sp.add_argument("--val-labels", default=None)
    sp.add_argument("--epochs", type=int, default=1500)
    sp.add_argument("--batch-size", type=int, default=4)
    sp.add_argument("--clicks", type=int, default=10, help="random clicks per object per step")
    sp.add_argument("--lr", type=float, default=1e-4)
    sp.add_argument("--grid-stride", type=int, default=None,
                    help="candidate grid spacing in pixels (default: about 12×12 points per object)")
    sp.add_argument("--val-clicks", type=int, default=10, help="seeds of the per-epoch validation")
    sp.add_argument("--resume", default=None, help="checkpoint to continue from (<out>.last.safetensors)")
    sp.add_argument("--overwrite", action="store_true",
                    help="replace an existing checkpoint of another run at --out (refused without it)")
    sp.add_argument("--log", default=None, help="per-epoch log (.jsonl)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--val-fraction", type=float, default=0.2,
                    help="without --val-images: share of the annotated images held out for validation "
                         "(0: none; the same split as the training widget)")
    sp.set_defaults(func=cmd_train, shift_block=None)
