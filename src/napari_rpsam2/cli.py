"""The ``rpsam2`` command: embed, train, evaluate, heatmap and info.

Every subcommand calls the same library functions as the napari widgets.
Bad input ends with exit status 2 and one line on stderr,
``rpsam2: error: <what is wrong and what to do>``; Ctrl-C ends with status 130
(``train`` first finishes its step and keeps the last good checkpoint).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._cli_support import (
    JobStopped,
    Parser,
    ProgressBars,
    UsageError,
    data_options,
    existing_file,
    existing_folder,
    make_model,
    merge_gap_option,
    model_options,
    output_file,
    run_job,
)

__all__ = ["main", "build_parser", "UsageError"]

_PKG_DIR = str(Path(__file__).resolve().parent)


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
    model = make_model(args, base)
    print(model.summary())
    return 0


def cmd_embed(args: argparse.Namespace, base=None) -> int:
    from .training.data import list_image_files, read_image_file

    files = list_image_files(existing_folder(args.images, "images"))
    cache_dir = Path(args.cache).expanduser()
    if cache_dir.exists() and not cache_dir.is_dir():
        raise UsageError(f"cache {cache_dir} is a file, not a folder")
    model = make_model(args, base, cache_dir=cache_dir)
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


def cmd_evaluate(args: argparse.Namespace, base=None) -> int:
    from .app.evaluate import evaluate, write_report
    from .evaluation.report import class_rows, method_names

    out = output_file(args.out, ".json")
    if args.clicks < 1:
        raise UsageError("--clicks must be at least 1")
    stack = _stack(args.images, args.labels, args.class_map, merge_gap=args.merge_gap)
    cache = Path(args.cache).expanduser() if args.cache else None
    model = make_model(args, base, cache_dir=cache)
    report = run_job(lambda progress, cancel: evaluate(model, stack, clicks=args.clicks, hd95_convention=args.hd95,
                                                       progress=progress, cancel=cancel),
                     quiet=args.quiet, stage="evaluate", what="evaluation")
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
    model = make_model(args, base, cache_dir=Path(args.cache).expanduser() if args.cache else None)
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
        atomic_write(outputs[smap.method], lambda tmp, a=smap.dice_map: _save_npy(tmp, a))
    png = save_maps_png(out.with_suffix(".png"), maps, image=image, mask=mask,
                        title=f"{Path(args.image).name}, object {args.object}")
    for smap in maps:
        s = smap.stats()
        print(f"{smap.method:<7} {s['points']} clicks, stride {smap.stride:g}px: Dice mean {s['mean']:.3f} "
              f"± {s['std']:.3f}, min {s['min']:.3f}, below 0.5: {100 * s['share_below_0.5']:.1f}%")
    print(f"wrote {', '.join(str(p) for p in outputs.values())}, {png}")
    return 0


# ------------------------------------------------------------------ parser
def _save_npy(path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # closed (and flushed) before atomic_write renames it
        np.save(fh, array)


def build_parser() -> argparse.ArgumentParser:
    """The ``rpsam2`` argument parser."""
    from ._cli_oneshot import add_parser as add_oneshot_parsers  # oneshot, oneshot-eval
    from ._cli_propagate import add_parser as add_propagate_parser
    from ._cli_train import add_parser as add_train_parser

    p = Parser(prog="rpsam2", description="RP-SAM2: stable SAM2 point prompts (embed, train, evaluate, heatmap, "
               "propagate, oneshot).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    _add_info(sub)
    _add_embed(sub)
    add_train_parser(sub)
    _add_evaluate(sub)
    _add_heatmap(sub)
    add_propagate_parser(sub, model_options)
    add_oneshot_parsers(sub, model_options)
    return p


def _add_info(sub) -> None:
    """``rpsam2 info``."""
    sp = sub.add_parser("info", help="print the model summary")
    model_options(sp)
    sp.add_argument("--shift-block", default=None, help="shift-block checkpoint (.safetensors)")
    sp.set_defaults(func=cmd_info)


def _add_embed(sub) -> None:
    """``rpsam2 embed``."""
    sp = sub.add_parser("embed", help="precompute image embeddings into a disk cache")
    model_options(sp)
    sp.add_argument("--images", required=True, help="folder of images")
    sp.add_argument("--cache", required=True, help="cache folder (created if missing)")
    sp.set_defaults(func=cmd_embed)


def _add_evaluate(sub) -> None:
    """``rpsam2 evaluate``."""
    sp = sub.add_parser("evaluate", help="10-seed single-click evaluation, SAM2 vs RP-SAM2")
    model_options(sp)
    data_options(sp)
    sp.add_argument("--shift-block", default=None, help="shift-block checkpoint (default: untrained)")
    sp.add_argument("--clicks", type=int, default=10, help="seeds: one click per object per seed")
    sp.add_argument("--hd95", choices=("pooled", "max-directed"), default="pooled",
                    help="HD95 convention: 95th percentile of both directions' border distances pooled "
                         "(MedPy; default) or the larger directed 95th percentile (MONAI)")
    sp.add_argument("--out", required=True, help="report .json (a .csv and a .png are written beside it)")
    sp.set_defaults(func=cmd_evaluate)


def _add_heatmap(sub) -> None:
    """``rpsam2 heatmap``."""
    sp = sub.add_parser("heatmap", help="grid-sensitivity Dice map of one object")
    model_options(sp)
    sp.add_argument("--image", required=True)
    sp.add_argument("--labels", required=True)
    sp.add_argument("--object", type=int, required=True, help="object id in the labels")
    sp.add_argument("--stride", type=int, default=None,
                    help="grid spacing in pixels (default: about 12×12 points inside the object)")
    sp.add_argument("--shift-block", default=None, help="also map RP-SAM2 with this checkpoint")
    sp.add_argument("--cache", default=None, help="embedding cache folder (see 'rpsam2 embed')")
    merge_gap_option(sp)
    sp.add_argument("--out", required=True, help="Dice map .npy (a .png is written beside it)")
    sp.set_defaults(func=cmd_heatmap)


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
    except JobStopped as stopped:
        print(f"rpsam2: {stopped}", file=sys.stderr)
        return 130
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
