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
    IMAGES_HELP,
    LABELS_HELP,
    UsageError,
    existing_file,
    existing_folder,
    make_model,
    open_input,
    output_file,
    output_folder,
    run_job,
    window_option,
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


class _WithReference:
    """The reference image followed by the targets, read one at a time (index 0 is the reference).

    The frames of a folder may differ in size (each is read as it is); the last slice read is kept.
    """

    def __init__(self, reference: np.ndarray, source) -> None:
        self.reference, self.source = reference, source
        self._last: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return 1 + len(self.source)

    def __getitem__(self, index: int) -> np.ndarray:
        i = int(index)
        if i == 0:
            return self.reference
        if self._last is None or self._last[0] != i:
            files = getattr(self.source.data, "files", None)
            if self.source.kind == "frames" and files is not None:
                from ..training.data import read_image_file

                plane = read_image_file(files[i - 1])
            else:
                plane = np.asarray(self.source.data[i - 1])
            self._last = (i, plane)
        return self._last[1]


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
    source = open_input(args.images, args.window)
    names = source.names
    options = _method_options(args, args.method)
    try:  # the reference's objects, checked before the model loads
        object_ids_of(ref_lab, args.objects)
    except ValueError as err:
        raise UsageError(f"--reference-labels {args.reference_labels}: {err}") from None
    model = make_model(args, base)
    method = make_method(args.method, model, refine=args.refine, contrast_limits=source.contrast_limits,
                         rgb=source.rgb, **options)
    images = _WithReference(ref_img, source)
    results = run_job(lambda progress, cancel: segment_stack(method, images, 0, ref_lab, object_ids=args.objects,
                                                             progress=progress, cancel=cancel),
                      quiet=args.quiet, stage="slices", what="one-shot segmentation")
    with atomic_folder(out, overwrite=args.overwrite) as tmp:  # the whole run appears at once, alone
        rows = _write_outputs(tmp, args, model, method, results, images, names, source)
    print(f"{args.method}: {len(results)} slices, {len(method.object_ids)} object(s); wrote {out}/labels, "
          f"prompts.csv ({len(rows)} clicks){', mask_prompts' if args.method == 'medpersam' else ''}, report.json")
    return 0


def _write_outputs(out: Path, args: argparse.Namespace, model, method, results, images, names,
                   source) -> list[tuple]:
    """``labels/``, ``mask_prompts/``, ``prompts.csv`` and ``report.json`` into ``out``; returns the click rows."""
    from ..evaluation.report import write_json
    from ..io import contrast_record, write_plane

    (out / "labels").mkdir()
    rows, slices = [], []
    for i, res in results.items():
        name = names[i - 1]
        write_plane(res.label_plane(np.shape(images[i])[:2]), out / "labels" / f"{name}.tif")
        for obj in res.objects:
            rows += [(name, obj.object_id, round(float(r), 2), round(float(c), 2), int(lab))
                     for (r, c), lab in zip(obj.decoded_points, obj.labels)]
            if obj.mask_prompt is not None:
                (out / "mask_prompts").mkdir(exist_ok=True)
                write_plane(obj.mask_prompt.astype(np.uint8),
                            out / "mask_prompts" / f"{name}_object{obj.object_id}.tif")
        slices.append({"slice": name, "objects": [{"object": o.object_id, "area": int(o.mask.sum()),
                                                   "score": o.score, **_info(o.info)} for o in res.objects]})
    _write_prompts(out / "prompts.csv", rows)
    report = {"method": args.method, "refine": args.refine, "reference_image": str(args.reference_image),
              "object_ids": method.object_ids, "backbone": model.backbone.name,
              "sam2_weights": model.backbone.weights_signature, "shift_block": args.shift_block,
              "images": str(args.images), "contrast": contrast_record(source),
              "options": {k: v for k, v in _method_options(args, args.method).items() if k != "config"},
              "slices": slices}
    if args.method == "medpersam":
        report["warping"] = {"seconds": method.training_seconds, "parameters": method.warp_model.parameter_count(),
                             "config": vars(method.config), "rounds": method.rounds}
    write_json(report, out / "report.json")
    return rows


def _info(info: dict) -> dict:
    return {k: v for k, v in info.items() if k in ("parts", "negatives", "emd", "passes")}


def cmd_oneshot_eval(args: argparse.Namespace, base=None) -> int:
    """The one-shot protocol on a folder of annotated slices."""
    out = output_file(args.out, ".json", "--out")
    from ..oneshot.protocol import one_shot_protocol
    from ..io import contrast_record
    from ..oneshot.report import write_protocol_csv, write_protocol_figure, write_protocol_json

    images, labels, files, source = _annotated_slices(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown or not methods:
        raise UsageError(f"unknown method(s) {unknown}; choose from {', '.join(METHOD_NAMES)}")
    refs = None if args.reference == "each" else [_reference_index(args.reference, len(files))]
    options = {m: {**_method_options(args, m), "contrast_limits": source.contrast_limits} for m in methods}
    model = make_model(args, base)
    report = run_job(lambda progress, cancel: one_shot_protocol(model, images, labels, methods=methods, references=refs,
                                                                refine=args.refine, options=options, rgb=source.rgb,
                                                                progress=progress, cancel=cancel),
                     quiet=args.quiet, stage="references", what="evaluation")
    report["protocol"]["files"] = files
    report["protocol"]["contrast"] = contrast_record(source)
    write_protocol_json(report, out)
    write_protocol_csv(report, out.with_suffix(".csv"))
    folder = "/".join(Path(args.images).expanduser().resolve().parts[-3:-1])
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


def _annotated_slices(args: argparse.Namespace):
    """Images and labels of ``oneshot-eval``: slices with labels (by file name for two folders, else by slice)."""
    from ..io import InputError, open_labels
    from ..training.data import list_image_files, read_label_file

    source = open_input(args.images, args.window)
    if source.kind == "frames" and Path(args.labels).expanduser().is_dir():
        lab_dir = existing_folder(args.labels, "labels")
        labels_by_stem = {f.stem: f for f in list_image_files(lab_dir, "labels")}
        picked = [(i, f) for i, f in enumerate(source.data.files) if f.stem in labels_by_stem]
        labels = [read_label_file(labels_by_stem[f.stem]) for _, f in picked]
        files = [f.name for _, f in picked]
        index = [i for i, _ in picked]
    else:
        try:
            planes, _ = open_labels(args.labels, like=source)
        except InputError as err:
            raise UsageError(str(err)) from None
        index = [i for i in range(len(planes)) if planes[i].any()]
        labels, files = [planes[i] for i in index], [source.names[i] for i in index]
    if len(index) < 2:
        raise UsageError(f"need at least two slices of {args.images} with labels in {args.labels}")
    return [np.asarray(source.data[i]) for i in index], labels, files, source


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
    sp.add_argument("--images", required=True, help="targets; " + IMAGES_HELP)
    window_option(sp)
    sp.add_argument("--objects", type=int, nargs="+", default=None, help="object ids to propagate (default: all)")
    _method_args(sp)
    sp.add_argument("--method", choices=METHOD_NAMES, required=True)
    sp.add_argument("--out", required=True, help="output folder (created if missing; written as a whole when "
                                                 "the run ends)")
    sp.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")
    sp.set_defaults(func=cmd_oneshot)

    sp = subparsers.add_parser("oneshot-eval", help="one-shot protocol on annotated slices, methods side by side")
    common(sp)
    sp.add_argument("--images", required=True, help=IMAGES_HELP)
    sp.add_argument("--labels", required=True, help=LABELS_HELP + " (same ids = same object on every slice)")
    window_option(sp)
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
