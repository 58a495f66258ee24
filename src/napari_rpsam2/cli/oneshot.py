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
    run_job,
)

__all__ = ["add_parser", "cmd_oneshot", "cmd_oneshot_eval"]

METHOD_NAMES = ("persam", "p2sam", "medpersam")


def _method_options(args: argparse.Namespace, name: str) -> dict:
    from ..app.oneshot_options import OneShotSettings, parse_counts

    try:
        settings = OneShotSettings(
            guided_attention=not args.no_guided_attention, semantic_prompt=not args.no_semantic_prompt,
            negative_rule=args.negative_rule, negatives=parse_counts(args.negatives, "--negatives"),
            warp_steps=args.warp_steps, rounds=args.rounds, retrain_epochs=args.retrain_epochs,
            refinements=args.refinements, organ=args.organ, clicks=args.clicks, kernel=args.kernel)
        return settings.options(name)
    except ValueError as err:
        raise UsageError(str(err)) from None


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
    from ..evaluation.report import write_json
    from ..oneshot import make_method, segment_stack
    from ..training.data import read_image_file, read_label_file

    ref_img = read_image_file(existing_file(args.reference_image, "reference image"))
    ref_lab = read_label_file(existing_file(args.reference_labels, "reference labels"))
    if ref_img.shape[:2] != ref_lab.shape:
        raise UsageError(f"reference image is {ref_img.shape[:2]} but its labels are {ref_lab.shape}")
    targets, names = _read_targets(args.images)
    if not targets:
        raise UsageError(f"no images found in {args.images}")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    options = _method_options(args, args.method)
    model = make_model(args, base)
    method = make_method(args.method, model, refine=args.refine, **options)
    images = [ref_img, *targets]
    results = run_job(lambda progress, cancel: segment_stack(method, images, 0, ref_lab, object_ids=args.objects,
                                                             progress=progress, cancel=cancel),
                      quiet=args.quiet, stage="slices", what="one-shot segmentation")
    (out / "labels").mkdir(parents=True, exist_ok=True)
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
              "sam2_weights": model.backbone.weights_signature, "shift_block": args.shift_block,
              "options": {k: v for k, v in options.items() if k != "config"}, "slices": slices}
    if args.method == "medpersam":
        report["warping"] = {"seconds": method.training_seconds, "parameters": method.warp_model.parameter_count(),
                             "config": vars(method.config), "rounds": method.rounds}
    write_json(report, out / "report.json")
    print(f"{args.method}: {len(results)} slices, {len(method.object_ids)} object(s); wrote {out}/labels, "
          f"prompts.csv ({len(rows)} clicks){', mask_prompts' if args.method == 'medpersam' else ''}, report.json")
    return 0


def _info(info: dict) -> dict:
    return {k: v for k, v in info.items() if k in ("parts", "negatives", "emd", "passes")}


def cmd_oneshot_eval(args: argparse.Namespace, base=None) -> int:
    """The one-shot protocol on a folder of annotated slices."""
    from ..oneshot.protocol import one_shot_protocol
    from ..oneshot.report import write_protocol_csv, write_protocol_figure, write_protocol_json
    from ..training.data import list_image_files, read_image_file, read_label_file

    out = output_file(args.out, ".json")
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
    print(f"{'method':<10} {'Dice':>6} {'HD95':>7} {'pos in':>7} {'neg out':>8} {'warped':>7} {'copied':>7}")
    for m, s in report["methods"].items():
        cells = [s[k]["mean"] for k in ("dice", "hd95", "positive_precision", "negative_precision",
                                         "warped_dice", "copy_dice")]
        print(f"{m:<10} " + " ".join("      -" if v is None else f"{v:7.3f}" for v in cells))
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
    sp.add_argument("--out", required=True, help="output folder (created if missing)")
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
    g = sp.add_argument_group("PerSAM (and Med-PerSAM's semantic prompt)")
    g.add_argument("--no-guided-attention", action="store_true",
                   help="PerSAM: leave the decoder's attention unguided by the similarity map")
    g.add_argument("--no-semantic-prompt", action="store_true",
                   help="PerSAM, Med-PerSAM: do not add the target embedding to the decoder's tokens")
    g = sp.add_argument_group("P2SAM")
    g.add_argument("--negative-rule", choices=("medical", "natural"), default="medical",
                   help="negatives from background clusters (medical) or one at the similarity minimum (natural)")
    g.add_argument("--negatives", default="1",
                   help="medical rule: negative clicks, a number (1) or a retrieval range (e.g. 1-5)")
    g = sp.add_argument_group("Med-PerSAM")
    g.add_argument("--warp-steps", type=int, default=150, help="warping-model training steps")
    g.add_argument("--rounds", type=int, default=5, help="retraining rounds with SAM2 pseudo-labels (paper: 5)")
    g.add_argument("--retrain-epochs", type=int, default=10, help="epochs per retraining round (paper: 10)")
    g.add_argument("--refinements", type=int, default=1, help="prompt refinements (paper: 1)")
    g.add_argument("--organ", choices=("single", "bilateral"), default="single",
                   help="organ type: 5 clicks of each kind, or 10 split between the two sides")
    g.add_argument("--clicks", type=int, default=None, help="positive and negative clicks each (default: by --organ)")
    g.add_argument("--kernel", type=int, default=None,
                   help="erosion/dilation radius in pixels (default: 15%% of the mask's radius)")
