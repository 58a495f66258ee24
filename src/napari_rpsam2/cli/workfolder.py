"""``rpsam2 rerun`` and ``rpsam2 export``: read a work folder (``<image>.rpsam2``) back.

``rerun`` segments every saved object again from its saved prompts and says
whether the mask is the same, pixel for pixel (exit status 1 when one is
not).  Objects made with SAM2 adapters are re-run with them: ``--adapters``
must name a file whose digest the events recorded (refused otherwise).  ``export`` writes the labels in the input's form (TIFF stack, NIfTI with the
volume's affine, per-frame PNGs named after the frames), the prompts CSV that
``rpsam2 propagate --prompts`` reads and COCO-style JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .support import UsageError, existing_file, make_model, output_file, run_job

__all__ = ["add_parsers", "cmd_rerun", "cmd_export"]

CHECKED = ("commit", "propagation", "oneshot")


def _open(path: str):
    from ..app.workfolder import WorkFolder

    return WorkFolder.open(path)


def _image(folder, given: str | None) -> np.ndarray:
    """The folder's image: ``--images`` or the path saved in ``meta.json``, read as napari's reader does."""
    source = given or folder.meta.get("image")
    if not source:
        raise UsageError(f"{folder.path} does not name its image; give it with --images")
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(f"the image {path} of {folder.path} does not exist; give it with --images")
    if path.is_dir() or path.suffix.lower() in (".tif", ".tiff"):
        from .propagate import open_stack

        stack = open_stack(str(path))
        image = np.stack([stack[i] for i in range(len(stack))]) if not isinstance(stack, np.ndarray) else stack
    else:
        from ..training.data import read_image_file

        image = read_image_file(path)
    return np.asarray(image)


def cmd_rerun(args: argparse.Namespace, base=None) -> int:
    """Run ``rpsam2 rerun``."""
    from ..app.workfolder import adapter_refusal, rerun

    folder = _open(args.workfolder)
    image = _image(folder, args.images)
    lead = image.shape[: len(folder.shape)]
    if tuple(lead) != folder.shape:
        raise UsageError(f"the image has shape {image.shape}, the work folder's labels {folder.shape}; "
                         "give the image the work folder was made for with --images")
    model = make_model(args, base)
    refused = adapter_refusal(folder, model)  # adapters recorded with the events: the same file, or none
    if refused:
        raise UsageError(refused)
    outcomes = run_job(lambda progress, cancel: rerun(folder, model, image, progress=progress, cancel=cancel),
                       quiet=args.quiet, stage="objects", what="re-run")
    failed = 0
    for o in outcomes:
        where = f"object {o.object_id} ({o.kind} #{o.seq}" + (f", slice {list(o.slice)})" if o.slice else ")")
        unit = "px" if o.kind == "commit" else "slices"
        if o.kind not in CHECKED or "not re-run" in o.note:
            print(f"{where}: skipped, {o.note}")
        elif o.reproduced:
            print(f"{where}: reproduced ({o.new_pixels} {unit})")
        else:
            failed += 1
            print(f"{where}: NOT reproduced: saved {o.saved_pixels} {unit}, now {o.new_pixels} {unit}"
                  + (f" ({o.note})" if o.note else ""))
    checked = sum(o.kind in CHECKED and "not re-run" not in o.note for o in outcomes)
    print(f"{checked - failed} of {checked} objects reproduced")
    return 1 if failed else 0


def _class_map(path: str | None) -> dict[int, str] | None:
    if path is None:
        return None
    file = existing_file(path, "class map")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in raw.items()}
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise UsageError(f"class map {file} must be a JSON object {{\"object id\": \"class name\"}}") from None


def _labels_output(path: str):
    """``--labels``: a .tif stack, a .nii/.nii.gz volume or a folder of PNGs (checked writable first)."""
    from ..io import InputError, check_output

    try:
        return check_output(path, "--labels")
    except InputError as err:
        raise UsageError(str(err)) from None


def _source(folder, given: str | None, form: str):
    """The image as the reader opens it (frame names, a volume's affine), when the labels' form needs it."""
    from .support import open_input

    path = given or folder.meta.get("image")
    if given is None and (form == "tiff" or not path or not Path(path).exists()):
        if form == "nifti":
            raise UsageError(f"the image of {folder.path} ({path or 'not named'}) is not there to take the "
                             "NIfTI affine from; give it with --images")
        return None  # a TIFF stack needs no source; PNGs are named after the frames the folder knows
    return open_input(str(path), what="--images")


def cmd_export(args: argparse.Namespace, base=None) -> int:
    """Run ``rpsam2 export``."""
    from ..app.workfolder import export

    if not (args.labels or args.prompts or args.coco):
        raise UsageError("nothing to export: give --labels out.tif (or .nii.gz, or a folder), --prompts "
                         "out.csv and/or --coco out.json")
    labels, form = _labels_output(args.labels) if args.labels else (None, None)
    prompts = output_file(args.prompts, ".csv") if args.prompts else None
    coco = output_file(args.coco, ".json") if args.coco else None
    classes = _class_map(args.class_map)
    folder = _open(args.workfolder)
    source = _source(folder, args.images, form) if labels is not None else None
    summary = export(folder, labels=labels, prompts=prompts, coco=coco, class_names=classes, source=source)
    print(f"{summary['objects']} objects" + "".join(f", wrote {p}" for p in (labels, prompts, coco) if p))
    if summary.get("prompts_left_out"):
        print(f"rpsam2: {summary['prompts_left_out']} mask prompt(s) have no CSV form and were left out of "
              f"{prompts}", file=sys.stderr)
    if summary["skipped_lines"]:
        print(f"rpsam2: {summary['skipped_lines']} unreadable journal line(s) skipped (cut short by a crash)",
              file=sys.stderr)
    return 0


def add_parsers(subparsers, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``rerun`` and ``export`` (``common`` adds the model options)."""
    sp = subparsers.add_parser("rerun", help="segment every saved object of a work folder again; same masks?")
    sp.add_argument("workfolder", help="the work folder (<image>.rpsam2)")
    common(sp)
    sp.add_argument("--images", default=None, help="the image (default: the path saved in the work folder)")
    sp.add_argument("--shift-block", default=None, help="shift-block checkpoint the objects were made with")
    sp.set_defaults(func=cmd_rerun)
    ex = subparsers.add_parser("export", help="labels (.tif), prompts CSV and COCO JSON of a work folder")
    ex.add_argument("workfolder", help="the work folder (<image>.rpsam2)")
    ex.add_argument("--labels", default=None,
                    help="labels to write, in the form of the name: a .tif stack, a .nii.gz volume (the image's "
                         "affine) or a folder of per-frame PNGs named after the frames (a name without extension)")
    ex.add_argument("--images", default=None,
                    help="the image, for frame names and a volume's affine (default: the path saved in the folder)")
    ex.add_argument("--prompts", default=None, help="prompts to write (.csv, as 'rpsam2 propagate' reads)")
    ex.add_argument("--coco", default=None, help="COCO-style JSON to write (.json; instance masks as RLE)")
    ex.add_argument("--class-map", default=None, help="JSON file {\"object id\": \"class name\"} for --coco")
    ex.set_defaults(func=cmd_export)
