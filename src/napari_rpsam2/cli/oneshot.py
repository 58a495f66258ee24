"""``rpsam2 oneshot`` and ``rpsam2 oneshot-eval``: one annotated slice → a segmented stack.

``oneshot`` writes ``labels/<slice>.tif`` per target, ``prompts.csv``
(``slice,object,row,col,label``), ``mask_prompts/<slice>.tif`` (Med-PerSAM)
and ``report.json``.  ``oneshot-eval`` runs the one-shot protocol on a folder
of annotated slices and writes a JSON report with a CSV and a PNG beside it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from .support import (
    UsageError,
    existing_file,
    existing_folder,
    make_model,
    output_file,
    output_folder,
    run_job,
)

__all__ = ["add_parser", "cmd_oneshot", "cmd_oneshot_eval"]

METHOD_NAMES = ("persam", "p2sam", "medpersam")


def _method_options(args: argparse.Namespace, name: str) -> dict:
    from ..oneshot import WarpConfig

    if name != "medpersam":
        return {}
    if args.warp_steps < 1 or args.rounds < 0:
        raise UsageError("--warp-steps must be at least 1 and --rounds at least 0")
    return {"config": WarpConfig(steps=args.warp_steps), "rounds": args.rounds}


def _read_targets(path: str) -> tuple[list[np.ndarray], list[str]]:
    from ..training.data import list_image_files, read_image_file

    p = Path(path).expanduser()
    if p.is_dir():
        files = list_image_files(p)
        return [read_image_file(f) for f in files], [f.stem for f in files]
    tiff = existing_file(path, "images")
    if tiff.suffix.lower() not in (".tif", ".tiff"):
        raise UsageError(f"--images {tiff} should be a folder of images or a .tif stack")
    import tifffile

    stack = np.asarray(tifffile.imread(tiff))
    if stack.ndim == 2 or (stack.ndim == 3 and stack.shape[-1] in (3, 4)):
        stack = stack[None]
    return list(stack), [f"{tiff.stem}_{i:04d}" for i in range(len(stack))]


def _write_tif(path: Path, array: np.ndarray) -> None:
    import tifffile

    from .._atomic import atomic_write

    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array, compression="zlib"))


def _write_prompts(path: Path, rows: list[tuple]) -> None:
    from .._atomic import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(("slice", "object", "row", "col", "label"))
            w.writerows(rows)

    atomic_write(path, write)


def cmd_oneshot(args: argparse.Namespace, base=None) -> int:
    """Propagate the reference slice's objects to every target slice."""
    out = output_folder(args.out, args.overwrite)  # first: a refusal comes before the slow imports
    from .._atomic import atomic_folder
    from ..oneshot import make_method, segment_stack
    from ..oneshot.method import object_ids_of
    from ..training.data import read_image_file, read_label_file

    ref_img = read_image_file(existing_file(args.reference_image, "reference image"))
    ref_lab = read_label_file(existing_file(args.reference_labels, "reference labels"))
    if ref_img.shape[:2] != ref_lab.shape:
        raise UsageError(f"reference image is {ref_img.shape[:2]} but its labels are {ref_lab.shape}")
    targets, names = _read_targets(args.images)
    if not targets:
        raise UsageError(f"no images found in {args.images}")
    options = _method_options(args, args.method)
    try:  # the reference's objects, checked before the model loads
        object_ids_of(ref_lab, args.objects)
    except ValueError as err:
        raise UsageError(f"--reference-labels {args.reference_labels}: {err}") from None
    model = make_model(args, base)
    method = make_method(args.method, model, refine=args.refine, **options)
    images = [ref_img, *targets]
    results = run_job(lambda progress, cancel: segment_stack(method, images, 0, ref_lab, object_ids=args.objects,
                                                             progress=progress, cancel=cancel),
                      quiet=args.quiet, stage="slices", what="one-shot segmentation")
    with atomic_folder(out, overwrite=args.overwrite) as tmp:  # the whole run appears at once, alone
        rows = _write_outputs(tmp, args, model, method, results, images, names)
    print(f"{args.method}: {len(results)} slices, {len(method.object_ids)} object(s); wrote {out}/labels, "
          f"prompts.csv ({len(rows)} clicks){', mask_prompts' if args.method == 'medpersam' else ''}, report.json")
    return 0


def _write_outputs(out: Path, args: argparse.Namespace, model, method, results, images, names) -> list[tuple]:
    """``labels/``, ``mask_prompts/``, ``prompts.csv`` and ``report.json`` into ``out``; returns the click rows."""
    from ..evaluation.report import write_json

    (out / "labels").mkdir()
    rows, slices = [], []
    for i, res in results.items():
        name = names[i - 1]
        _write_tif(out / "labels" / f"{name}.tif", res.label_plane(np.shape(images[i])[:2]))
        for obj in res.objects:
            rows += [(name, obj.object_id, round(float(r), 2), round(float(c), 2), int(lab))
                     for (r, c), lab in zip(obj.decoded_points, obj.labels)]
            if obj.mask_prompt is not None:
                (out / "mask_prompts").mkdir(exist_ok=True)
                _write_tif(out / "mask_prompts" / f"{name}_object{obj.object_id}.tif", obj.mask_prompt.astype(np.uint8))
        slices.append({"slice": name, "objects": [{"object": o.object_id, "area": int(o.mask.sum()),
                                                   "score": o.score, **_info(o.info)} for o in res.objects]})
    _write_prompts(out / "prompts.csv", rows)
    report = {"method": args.method, "refine": args.refine, "reference_image": str(args.reference_image),
              "object_ids": method.object_ids, "backbone": model.backbone.name,
              "sam2_weights": model.backbone.weights_signature, "shift_block": args.shift_block, "slices": slices}
    if args.method == "medpersam":
        report["warping"] = {"seconds": method.training_seconds, "parameters": method.warp_model.parameter_count(),
                             "config": vars(method.config), "rounds": method.rounds}
    write_json(report, out / "report.json")
    return rows


def _info(info: dict) -> dict:
    return {k: v for k, v in info.items() if k in ("parts", "emd", "passes")}


def cmd_oneshot_eval(args: argparse.Namespace, base=None) -> int:
    """The one-shot protocol on a folder of annotated slices."""
    out = output_file(args.out, ".json", "--out")
    from ..oneshot.protocol import one_shot_protocol
    from ..oneshot.report import write_protocol_csv, write_protocol_figure, write_protocol_json
    from ..training.data import list_image_files, read_image_file, read_label_file

    img_dir, lab_dir = existing_folder(args.images, "images"), existing_folder(args.labels, "labels")
    labels_by_stem = {f.stem: f for f in list_image_files(lab_dir, "labels")}
    files = [f for f in list_image_files(img_dir) if f.stem in labels_by_stem]
    if len(files) < 2:
        raise UsageError(f"need at least two images in {img_dir} with labels of the same name in {lab_dir}")
    images = [read_image_file(f) for f in files]
    labels = [read_label_file(labels_by_stem[f.stem]) for f in files]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown or not methods:
        raise UsageError(f"unknown method(s) {unknown}; choose from {', '.join(METHOD_NAMES)}")
    refs = None if args.reference == "each" else [_reference_index(args.reference, len(files))]
    options = {m: _method_options(args, m) for m in methods}
    model = make_model(args, base)
    report = run_job(lambda progress, cancel: one_shot_protocol(model, images, labels, methods=methods, references=refs,
                                                                refine=args.refine, options=options,
                                                                progress=progress, cancel=cancel),
                     quiet=args.quiet, stage="references", what="evaluation")
    report["protocol"]["files"] = [f.name for f in files]
    write_protocol_json(report, out)
    write_protocol_csv(report, out.with_suffix(".csv"))
    folder = "/".join(img_dir.resolve().parts[-3:-1])
    write_protocol_figure(report, out.with_suffix(".png"), title=f"{folder}: one-shot protocol")
    print(f"{'method':<10} {'Dice %':>7} {'HD95 px':>8} {'pos in %':>9} {'neg out %':>10} {'warped %':>9} "
          f"{'copied %':>9}")
    for m, s in report["methods"].items():
        cells = [s[k]["mean"] for k in ("dice", "hd95", "positive_precision", "negative_precision",
                                         "warped_dice", "copy_dice")]
        print(f"{m:<10} " + " ".join("-".rjust(w) if v is None else f"{v:{w}.2f}"
                                     for v, w in zip(cells, (7, 8, 9, 10, 9, 9))))
    print(f"wrote {out}, {out.with_suffix('.csv').name}, {out.with_suffix('.png').name}")
    return 0


def _reference_index(text: str, n: int) -> int:
    try:
        i = int(text)
    except ValueError:
        raise UsageError(f"--reference must be a slice number or 'each', not {text!r}") from None
    if not 0 <= i < n:
        raise UsageError(f"--reference {i} is outside the {n} annotated slices (0 … {n - 1})")
    return i


def add_parser(subparsers, common) -> None:
    """Register ``oneshot`` and ``oneshot-eval``; ``common`` adds the model options."""
    sp = subparsers.add_parser("oneshot", help="segment a stack from one annotated slice (PerSAM, P2SAM, Med-PerSAM)")
    common(sp)
    sp.add_argument("--reference-image", required=True, help="the annotated slice (image file)")
    sp.add_argument("--reference-labels", required=True, help="its labels (object ids; 0 = background)")
    sp.add_argument("--images", required=True, help="folder of target images, or a .tif stack")
    sp.add_argument("--objects", type=int, nargs="+", default=None, help="object ids to propagate (default: all)")
    _method_args(sp)
    sp.add_argument("--method", choices=METHOD_NAMES, required=True)
    sp.add_argument("--out", required=True, help="output folder (created if missing; written as a whole when "
                                                 "the run ends)")
    sp.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")
    sp.set_defaults(func=cmd_oneshot)

    sp = subparsers.add_parser("oneshot-eval", help="one-shot protocol on annotated slices, methods side by side")
    common(sp)
    sp.add_argument("--images", required=True, help="folder of images")
    sp.add_argument("--labels", required=True, help="folder of labels (same ids = same object on every slice)")
    sp.add_argument("--methods", default=",".join(METHOD_NAMES), help="comma-separated (default: all three)")
    sp.add_argument("--reference", default="each", help="reference slice number, or 'each' (default)")
    _method_args(sp)
    sp.add_argument("--out", required=True, help="report .json (a .csv and a .png are written beside it)")
    sp.set_defaults(func=cmd_oneshot_eval)


def _method_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--refine", action="store_true", help="move every generated positive click with the shift block")
    sp.add_argument("--shift-block", default=None, help="shift-block checkpoint for --refine")
    sp.add_argument("--warp-steps", type=int, default=150, help="Med-PerSAM warping-model training steps")
    sp.add_argument("--rounds", type=int, default=0, help="Med-PerSAM retraining rounds with SAM2 pseudo-labels")
