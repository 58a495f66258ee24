"""``rpsam2 propagate``: follow objects through an image stack from prompts in a CSV file.

``prompts.csv`` holds one prompt per row, with a header naming the columns:
``slice,object,row,col,label`` for a click (``label`` 1 positive, 0 negative;
1 when empty) and ``slice,object,top,left,bottom,right`` for a box.  One file
may mix both kinds (leave the other columns empty).  Slices count from 0 in
the order of the image files (natural order: ``2.png`` before ``10.png``), the
pages of the TIFF, the frames of a video or the slices of a volume; a slice may
also be named as ``rpsam2 oneshot`` names it in its ``prompts.csv`` (the image
file's name without extension, ``<tiff name>_0007`` for page 7,
``frame_000123`` for a video frame), so that file can be given here as it is,
or by its file name with the extension.  Any input of :mod:`napari_rpsam2.io`
is read lazily; the labels are written in the form ``--out`` names.  A number that
is also the name of another slice's file is refused as ambiguous.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .support import (
    IMAGES_HELP,
    UsageError,
    existing_file,
    make_model,
    open_input,
    output_file,
    run_job,
    window_option,
)

__all__ = ["add_parser", "cmd_propagate", "read_prompts", "open_stack", "slice_names"]

_CLICK = ("row", "col")
_BOX = ("top", "left", "bottom", "right")


def open_stack(path: str, window: str | None = None):
    """The lazy stack of ``--images`` (any input :func:`napari_rpsam2.io.open_images` reads)."""
    return open_input(path, window).data


def _number(row: dict, name: str, line: int, integer: bool = False):
    text = (row.get(name) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"prompts line {line}: column '{name}' must be a number, got {text!r}") from None
    if integer and value != int(value):
        raise UsageError(f"prompts line {line}: column '{name}' must be a whole number, got {text!r}")
    return int(value) if integer else value


def slice_names(source) -> dict[str, int]:
    """``name -> slice`` as ``rpsam2 oneshot`` names slices (file stems, ``<tiff stem>_0007``, ``frame_000123``),
    and, for a folder of frames, the file names."""
    names = {n: i for i, n in enumerate(source.names)}
    files = getattr(source.data, "files", None)
    if source.kind == "frames" and files is not None:
        names = {**{f.name: i for i, f in enumerate(files)}, **names}
    return names


def _slice(row: dict, line: int, names: dict[str, int] | None, n_slices: int) -> int:
    """The ``slice`` column: a slice number, or a slice name when ``names`` (of ``n_slices`` slices) are known."""
    text = (row.get("slice") or "").strip()
    named = None if names is None else names.get(text)
    try:
        number = _number(row, "slice", line, True)
    except UsageError:
        if named is None:
            raise UsageError(f"prompts line {line}: slice {text!r} is neither a slice number nor the name of an "
                             "image in --images") from None
        return named
    if named is not None and named != number:
        if not 0 <= number < n_slices:  # no such slice number: the name is meant
            return named
        raise UsageError(f"prompts line {line}: slice {text!r} is ambiguous: slice number {number}, or the image "
                         f"named {text!r} (slice {named}); write the image's file name with its extension")
    return number


def read_prompts(path: str | Path, names: dict[str, int] | None = None) -> list:
    """The prompts of a CSV file as :class:`~napari_rpsam2.model.FramePrompt` objects.

    ``names`` (see :func:`slice_names`) lets the ``slice`` column name slices instead of numbering them.
    """
    from ..model import FramePrompt

    with open(existing_file(str(path), "prompts"), newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        if not {"slice", "object"} <= columns or not (set(_CLICK) <= columns or set(_BOX) <= columns):
            raise UsageError(f"prompts {path} needs a header with slice,object and row,col[,label] "
                             f"and/or top,left,bottom,right; found {sorted(columns)}")
        prompts = []
        n_slices = 0 if names is None else len(set(names.values()))
        for line, row in enumerate(reader, start=2):
            sl, obj = _slice(row, line, names, n_slices), _number(row, "object", line, True)
            has_click = any((row.get(c) or "").strip() for c in _CLICK)
            has_box = any((row.get(c) or "").strip() for c in _BOX)
            if has_click == has_box:
                raise UsageError(f"prompts line {line}: give either row,col (a click) or "
                                 "top,left,bottom,right (a box)")
            if has_click:
                label = _number(row, "label", line, True) if (row.get("label") or "").strip() else 1
                point = (_number(row, "row", line), _number(row, "col", line))
                prompts.append(FramePrompt(sl, obj, points=np.array([point]), labels=np.array([label])))
            else:
                prompts.append(FramePrompt(sl, obj, box=tuple(_number(row, c, line) for c in _BOX)))
    if not prompts:
        raise UsageError(f"prompts {path} has no rows; add at least one click or box")
    return prompts


def _write_scores(result, out: Path) -> None:
    from .._atomic import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["slice", *[f"object_{i}" for i in result.object_ids]])
            for t in np.flatnonzero(result.tracked):
                w.writerow([int(t), *["" if np.isnan(v) else f"{v:.4f}" for v in result.scores[t]]])

    atomic_write(out, write)


def cmd_propagate(args: argparse.Namespace, base=None) -> int:
    """Run ``rpsam2 propagate``."""

    from ..io import check_output, write_labels

    out, _ = check_output(args.out)
    scores = output_file(args.scores, ".csv") if args.scores else None
    if args.stop_after is not None and args.stop_after < 1:
        raise UsageError("--stop-after must be at least 1 (frames)")
    source = open_input(args.images, args.window)
    prompts = read_prompts(args.prompts, slice_names(source))
    cache = Path(args.cache).expanduser() if args.cache else None
    model = make_model(args, base, cache_dir=cache)
    result = run_job(lambda progress, cancel: model.propagate(
        source.data, prompts, direction=args.direction, start=args.start, stop=args.stop,
        refine=not args.no_refine, stop_after=args.stop_after, stop_threshold=args.stop_threshold,
        contrast_limits=source.contrast_limits, rgb=source.rgb, progress=progress, cancel=cancel),
        quiet=args.quiet, stage="frames", what="propagation")
    write_labels(result.labels, out, source, {"command": "propagate", "direction": args.direction})
    if scores is not None:
        _write_scores(result, scores)
    tracked = int(result.tracked.sum())
    print(f"{len(result.object_ids)} objects through {tracked} of {len(result.tracked)} slices"
          + "".join(f"; object {o} stopped at slice {s}" for o, s in result.stopped.items()))
    print(f"wrote {out}" + (f" and {scores}" if scores else ""))
    return 0


def add_parser(subparsers, common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Register ``propagate`` on the ``rpsam2`` subcommand parsers (``common`` adds the model options)."""
    sp = subparsers.add_parser("propagate", help="follow objects through a stack from clicks/boxes (SAM2 memory)")
    if common is not None:
        common(sp)
    sp.add_argument("--images", required=True, help=IMAGES_HELP)
    window_option(sp)
    sp.add_argument("--prompts", required=True, help="CSV: slice,object,row,col,label and/or "
                                                     "slice,object,top,left,bottom,right")
    sp.add_argument("--out", required=True, help="labels to write: a .tif stack, a .nii.gz volume (the images' affine) "
                                                 "or a folder (one PNG per slice, named after the slices)")
    sp.add_argument("--scores", default=None, help="also write SAM2's object scores per slice (.csv)")
    sp.add_argument("--direction", choices=("forward", "backward", "both"), default="both")
    sp.add_argument("--start", type=int, default=None, help="first slice of the range (default 0)")
    sp.add_argument("--stop", type=int, default=None, help="slice after the range (default: all)")
    sp.add_argument("--stop-after", type=int, default=None,
                    help="drop an object unseen for this many slices in a row (default: never)")
    sp.add_argument("--stop-threshold", type=float, default=0.0,
                    help="object-score logit below which an object counts as unseen (default 0)")
    sp.add_argument("--shift-block", default=None, help="shift-block checkpoint (default: untrained)")
    sp.add_argument("--no-refine", action="store_true", help="plain SAM2 clicks (no shift block)")
    sp.add_argument("--cache", default=None, help="embedding cache folder (see 'rpsam2 embed')")
    sp.set_defaults(func=cmd_propagate)
