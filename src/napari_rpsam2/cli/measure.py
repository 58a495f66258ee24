"""``rpsam2 evaluate`` and ``rpsam2 heatmap``: how well, and how stably, SAM2 segments annotated objects."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .support import (
    ProgressBars,
    UsageError,
    cache_folder,
    data_options,
    existing_file,
    existing_path,
    make_model,
    merge_gap_option,
    model_options,
    output_file,
    run_job,
)


def _stack(images: str, labels: str, class_map: str | None, what: str = "", merge_gap: float | None = None,
           window: str | None = None):
    from ..training.data import DEFAULT_MERGE_GAP
    from ..training.sources import stack_from_paths

    img_dir = existing_path(images, f"{what}images")
    lab_dir = existing_path(labels, f"{what}labels")
    if class_map is not None:
        existing_file(class_map, "class map")
    stack = stack_from_paths(img_dir, lab_dir, class_map=class_map,
                             merge_gap=DEFAULT_MERGE_GAP if merge_gap is None else merge_gap, window=window)
    for warning in stack.warnings:
        print(f"rpsam2: warning: {warning}", file=sys.stderr)
    return stack


def cmd_evaluate(args: argparse.Namespace, base=None) -> int:
    out = output_file(args.out, ".json", "--out")
    cache = cache_folder(args.cache)
    from ..app.evaluate import evaluate, write_report
    from ..evaluation.report import class_rows, method_names

    if args.clicks < 1:
        raise UsageError("--clicks must be at least 1")
    stack = _stack(args.images, args.labels, args.class_map, merge_gap=args.merge_gap, window=args.window)
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
    out = output_file(args.out, ".npy", "--out")
    cache = cache_folder(args.cache)
    from .._atomic import atomic_write
    from ..app.heatmap import object_mask, sensitivity_maps
    from ..evaluation.sensitivity import save_maps_png
    from ..training.data import read_image_file, read_label_file

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
    model = make_model(args, base, cache_dir=cache)
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


def _save_npy(path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # closed (and flushed) before atomic_write renames it
        np.save(fh, array)


def add_evaluate(sub) -> None:
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


def add_heatmap(sub) -> None:
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
