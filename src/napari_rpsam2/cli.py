"""The ``rpsam2`` command: embed, train, evaluate, heatmap and info.

Every subcommand calls the same library functions as the napari widgets.
Bad input ends with exit status 2 and one line on stderr,
``rpsam2: error: <what is wrong and what to do>``; Ctrl-C ends with status 130
(``train`` first finishes its step and keeps the last good checkpoint).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._cli_support import Parser, ProgressBars, UsageError, existing_file, existing_folder, output_file, sigint_cancel

__all__ = ["main", "build_parser", "UsageError"]

_PKG_DIR = str(Path(__file__).resolve().parent)


# ------------------------------------------------------------------ model
def _make_model(args: argparse.Namespace, base=None, cache_dir: Path | None = None):
    """Load the model from the options; ``base`` (tests) lends its backbone and cache."""
    import torch

    from .model import RPSAM2, EmbeddingCache
    from .model.weights import resolve_backbone

    shift_block = getattr(args, "shift_block", None)
    if shift_block is not None:
        existing_file(shift_block, "shift-block checkpoint")
    if base is None:
        weights = args.sam2_weights or resolve_backbone(args.backbone).hf_id
        return RPSAM2.load(args.backbone, weights, shift_block=shift_block, device=args.device,
                           seed=0, cache_dir=cache_dir)
    cache = base.cache if cache_dir is None else EmbeddingCache(base.cache.max_bytes, cache_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = RPSAM2(base.backbone, cache=cache)
    if shift_block is not None:
        model.load_shift_block(shift_block)
    return model


def _stack(images: str, labels: str, class_map: str | None, what: str = "", merge_gap: float | None = None):
    from .training.data import DEFAULT_MERGE_GAP, stack_from_folders

    img_dir = existing_folder(images, f"{what}images")
    lab_dir = existing_folder(labels, f"{what}labels")
    if class_map is not None:
        existing_file(class_map, "class map")
    stack = stack_from_folders(img_dir, lab_dir, class_map=class_map,
                               merge_gap=DEFAULT_MERGE_GAP if merge_gap is None else merge_gap)
    for warning in stack.warnings:
        print(f"rpsam2: warning: {warning}", file=sys.stderr)
    return stack


# ------------------------------------------------------------------ commands
def cmd_info(args: argparse.Namespace, base=None) -> int:
    model = _make_model(args, base)
    print(model.summary())
    return 0


def cmd_embed(args: argparse.Namespace, base=None) -> int:
    from .training.data import list_image_files, read_image_file

    files = list_image_files(existing_folder(args.images, "images"))
    cache_dir = Path(args.cache).expanduser()
    if cache_dir.exists() and not cache_dir.is_dir():
        raise UsageError(f"cache {cache_dir} is a file, not a folder")
    model = _make_model(args, base, cache_dir=cache_dir)
    bars, before = ProgressBars(args.quiet, "embeddings"), model.cache.stats.disk_writes
    slices = 0
    try:
        for i, f in enumerate(files):
            arr = read_image_file(f)
            slices += model.precompute(arr, rgb=arr.ndim == 3)
            bars(i + 1, len(files))
    finally:
        bars.close()
    computed = model.cache.stats.disk_writes - before
    print(f"{slices} slices from {len(files)} files: {computed} computed, {slices - computed} found in {cache_dir}")
    return 0


def cmd_train(args: argparse.Namespace, base=None) -> int:
    from .app.train import train
    from .training import ddp
    from .training.trainer import TrainConfig

    if (args.val_images is None) != (args.val_labels is None):
        raise UsageError("give both --val-images and --val-labels, or neither")
    out = output_file(args.out, ".safetensors")
    if args.resume is not None:
        existing_file(args.resume, "resume checkpoint")
    if args.log is not None:
        output_file(args.log, ".jsonl")
    for name in ("epochs", "batch_size", "clicks", "val_clicks", "grid_stride"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        raise UsageError("--lr must be positive")
    val_fraction = getattr(args, "val_fraction", 0.2)
    if not 0 <= val_fraction < 1:
        raise UsageError("--val-fraction must be at least 0 and below 1")
    data = _training_data(args, val_fraction)
    cache = Path(args.cache).expanduser() if args.cache else None
    rank, world = 0, 1
    if "RANK" in os.environ:  # started by torchrun: join its process group
        rank, world, args.device = ddp.init_from_env(args.device)
    if rank == 0:
        print(f"validation: {data.validation}", file=sys.stderr)
    model = _make_model(args, base, cache_dir=cache)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         clicks_per_object=args.clicks, seed=args.seed, grid_stride=args.grid_stride,
                         eval_clicks=args.val_clicks)
    bars = ProgressBars(args.quiet)
    with sigint_cancel() as cancel:
        try:
            result = train(model, data, out, config, resume=args.resume, log_path=args.log, progress=bars,
                           on_epoch=_print_epoch, cancel=cancel).result
        finally:
            bars.close()
            ddp.leave_group()
    if rank != 0:
        return 0
    from .training.trainer import last_checkpoint_path

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
    from .app.train import data_from_folders

    img_dir = existing_folder(args.images, "images")
    lab_dir = existing_folder(args.labels, "labels")
    val_img = val_lab = None
    if args.val_images is not None:
        val_img = existing_folder(args.val_images, "validation images")
        val_lab = existing_folder(args.val_labels, "validation labels")
    if args.class_map is not None:
        existing_file(args.class_map, "class map")
    data = data_from_folders(img_dir, lab_dir, class_map=args.class_map, val_images_dir=val_img,
                             val_labels_dir=val_lab, val_fraction=val_fraction, seed=args.seed,
                             merge_gap=args.merge_gap)
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


def cmd_evaluate(args: argparse.Namespace, base=None) -> int:
    from .app.evaluate import evaluate, write_report
    from .evaluation.report import class_rows, method_names
    from .jobs import Cancelled

    out = output_file(args.out, ".json")
    if args.clicks < 1:
        raise UsageError("--clicks must be at least 1")
    stack = _stack(args.images, args.labels, args.class_map, merge_gap=args.merge_gap)
    cache = Path(args.cache).expanduser() if args.cache else None
    model = _make_model(args, base, cache_dir=cache)
    bars = ProgressBars(args.quiet, "evaluate")
    with sigint_cancel() as cancel:
        try:
            report = evaluate(model, stack, clicks=args.clicks, hd95_convention=args.hd95, progress=bars,
                              cancel=cancel)
        except Cancelled:
            print("rpsam2: evaluation cancelled; nothing written", file=sys.stderr)
            return 130
        finally:
            bars.close()
    report = dict(report)
    report["run"] = {"images": str(args.images), "labels": str(args.labels),
                     "shift_block": args.shift_block, "backbone": model.backbone.name,
                     "sam2_weights": model.backbone.weights_signature, "merge_gap": stack.merge_gap}
    write_report(report, out, title=f"{'/'.join(Path(args.images).resolve().parts[-2:])}: {args.clicks} seeds")
    print(f"{'method':<8} {'class':<16} {'mDSC (%)':>16} {'mHD95 (px)':>18}")
    for m in method_names(report):
        for r in class_rows(report[m]):
            print(f"{m:<8} {r['class']:<16} {r['mDSC_mean']:>8.2f} ± {r['mDSC_std']:<5.2f} "
                  f"{r['mHD95_mean']:>9.2f} ± {r['mHD95_std']:<6.2f}")
    print(f"HD95 convention: {args.hd95}; 'class average' is the mean over classes (the paper's Avg. row), "
          "'object-weighted' counts every object once")
    if args.shift_block is None:
        print("note: no --shift-block given, so rpsam2 used an untrained (identity) block and equals sam2")
    print(f"wrote {out}, {out.with_suffix('.csv').name}, {out.with_suffix('.png').name}")
    return 0


def cmd_heatmap(args: argparse.Namespace, base=None) -> int:
    from ._atomic import atomic_write
    from .app.heatmap import object_mask, sensitivity_maps
    from .evaluation.sensitivity import save_maps_png
    from .training.data import read_image_file, read_label_file

    out = output_file(args.out, ".npy")
    image = read_image_file(existing_file(args.image, "image"))
    labels = read_label_file(existing_file(args.labels, "labels"))
    if image.shape[:2] != labels.shape:
        raise UsageError(f"image {args.image} is {image.shape[:2]} but labels {args.labels} are {labels.shape}")
    try:  # binary masks → objects, as the training reader makes them (regions closer than the gap join)
        mask = object_mask(labels, args.object, split_binary=True, merge_gap=args.merge_gap, where=str(args.labels))
    except ValueError as err:
        raise UsageError(str(err)) from err
    if args.stride is not None and args.stride < 1:
        raise UsageError("--stride must be at least 1 pixel")
    model = _make_model(args, base, cache_dir=Path(args.cache).expanduser() if args.cache else None)
    bars = ProgressBars(args.quiet)
    try:
        maps = sensitivity_maps(model, image, mask, stride=args.stride, refined=bool(args.shift_block),
                                rgb=image.ndim == 3, progress=lambda stage, done, total: bars(
                                    f"{stage} grid", done, total))
    finally:
        bars.close()
    outputs = {maps[-1].method: out}
    if len(maps) > 1:
        outputs["sam2"] = out.with_name(out.stem + "_sam2.npy")
    for smap in maps:
        atomic_write(outputs[smap.method], lambda tmp, a=smap.dice_map: np.save(open(tmp, "wb"), a))
    png = save_maps_png(out.with_suffix(".png"), maps, image=image, mask=mask,
                        title=f"{Path(args.image).name}, object {args.object}")
    for smap in maps:
        s = smap.stats()
        print(f"{smap.method:<7} {s['points']} clicks, stride {smap.stride:g}px: Dice mean {s['mean']:.3f} "
              f"± {s['std']:.3f}, min {s['min']:.3f}, below 0.5: {100 * s['share_below_0.5']:.1f}%")
    print(f"wrote {', '.join(str(p) for p in outputs.values())}, {png}")
    return 0


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The ``rpsam2`` argument parser."""
    p = Parser(prog="rpsam2", description="RP-SAM2: stable SAM2 point prompts (embed, train, evaluate, heatmap).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--backbone", default="sam2.1_hiera_tiny", help="SAM2 size (default %(default)s)")
        sp.add_argument("--sam2-weights", default=None,
                        help="'random', a local .pt/.safetensors file, or a Hugging Face id "
                             "(default: the backbone's facebook/sam2.1-hiera-* id)")
        sp.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    def data(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--images", required=True, help="folder of images")
        sp.add_argument("--labels", required=True, help="folder of label images with the same file names")
        sp.add_argument("--class-map", default=None, help="JSON file {\"object id\": \"class name\"}")
        sp.add_argument("--cache", default=None, help="embedding cache folder (see 'rpsam2 embed')")
        merge_gap(sp)

    def merge_gap(sp: argparse.ArgumentParser) -> None:  # default None: the library's (12 px)
        sp.add_argument("--merge-gap", type=float, default=None, metavar="PX",
                        help="binary labels: regions at most PX pixels apart are one object (default 12: "
                             "joins the prongs of one forceps; 0: every region is an object); "
                             "instance labels are kept as they are")

    sp = sub.add_parser("info", help="print the model summary")
    common(sp)
    sp.add_argument("--shift-block", default=None, help="shift-block checkpoint (.safetensors)")
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("embed", help="precompute image embeddings into a disk cache")
    common(sp)
    sp.add_argument("--images", required=True, help="folder of images")
    sp.add_argument("--cache", required=True, help="cache folder (created if missing)")
    sp.set_defaults(func=cmd_embed)

    sp = sub.add_parser("train", help="train a shift block on annotated images")
    common(sp)
    data(sp)
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
    sp.add_argument("--log", default=None, help="per-epoch log (.jsonl)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--val-fraction", type=float, default=0.2,
                    help="without --val-images: share of the annotated images held out for validation "
                         "(0: none; the same split as the training widget)")
    sp.set_defaults(func=cmd_train, shift_block=None)

    sp = sub.add_parser("evaluate", help="10-seed single-click evaluation, SAM2 vs RP-SAM2")
    common(sp)
    data(sp)
    sp.add_argument("--shift-block", default=None, help="shift-block checkpoint (default: untrained)")
    sp.add_argument("--clicks", type=int, default=10, help="seeds: one click per object per seed")
    sp.add_argument("--hd95", choices=("pooled", "max-directed"), default="pooled",
                    help="HD95 convention: 95th percentile of both directions' border distances pooled "
                         "(MedPy; default) or the larger directed 95th percentile (MONAI)")
    sp.add_argument("--out", required=True, help="report .json (a .csv and a .png are written beside it)")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("heatmap", help="grid-sensitivity Dice map of one object")
    common(sp)
    sp.add_argument("--image", required=True)
    sp.add_argument("--labels", required=True)
    sp.add_argument("--object", type=int, required=True, help="object id in the labels")
    sp.add_argument("--stride", type=int, default=None,
                    help="grid spacing in pixels (default: about 12×12 points inside the object)")
    sp.add_argument("--shift-block", default=None, help="also map RP-SAM2 with this checkpoint")
    sp.add_argument("--cache", default=None, help="embedding cache folder (see 'rpsam2 embed')")
    merge_gap(sp)
    sp.add_argument("--out", required=True, help="Dice map .npy (a .png is written beside it)")
    sp.set_defaults(func=cmd_heatmap)

    from ._cli_oneshot import add_parser as add_oneshot_parsers  # oneshot, oneshot-eval

    add_oneshot_parsers(sub, common)
    return p


def _is_user_error(err: BaseException) -> bool:
    from ._atomic import OutputError
    from .model import CheckpointError, ImageError, PromptError, WeightsError

    if isinstance(err, (UsageError, CheckpointError, ImageError, PromptError, WeightsError, OutputError)):
        return True
    try:
        from .training.data import DataError

        if isinstance(err, DataError):
            return True
    except ImportError:
        pass
    if isinstance(err, ValueError):  # only the library's own checks, not bugs elsewhere
        frames = traceback.extract_tb(err.__traceback__)
        return bool(frames) and frames[-1].filename.startswith(_PKG_DIR)
    return False


def main(argv: Sequence[str] | None = None, *, model=None) -> int:
    """Run ``rpsam2``; returns the exit status.

    ``model`` (an :class:`RPSAM2`) lends its backbone and embedding cache
    instead of loading one; tests use it to share one model.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help
        return int(stop.code or 0)
    except UsageError as err:
        print(f"rpsam2: error: {err}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, model))
    except KeyboardInterrupt:
        print("rpsam2: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not _is_user_error(err):
            raise
        print(f"rpsam2: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
