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

from .prompts_file import read_prompts
from .support import (
    IMAGES_HELP,
    UsageError,
    cache_folder,
    make_model,
    open_input,
    output_file,
    run_job,
    window_option,
)

__all__ = ["add_parser", "cmd_propagate", "read_prompts", "open_stack", "slice_names"]


def open_stack(path: str, window: str | None = None):
    """The lazy stack of ``--images`` (any input :func:`napari_rpsam2.io.open_images` reads)."""
    return open_input(path, window).data


def slice_names(source) -> dict[str, int]:
    """``name -> slice`` as ``rpsam2 oneshot`` names slices (file stems, ``<tiff stem>_0007``, ``frame_000123``),
    and, for a folder of frames, the file names."""
    names = {n: i for i, n in enumerate(source.names)}
    files = getattr(source.data, "files", None)
    if source.kind == "frames" and files is not None:
        names = {**{f.name: i for i, f in enumerate(files)}, **names}
    return names


def _write_scores(result, out: Path) -> None:
    from .._atomic import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["slice", *[f"object_{i}" for i in result.object_ids]])
            for t in np.flatnonzero(result.tracked):
                w.writerow([int(t), *["" if np.isnan(v) else f"{v:.4f}" for v in result.scores[t]]])

    atomic_write(out, write)


def slice_range(start: int | None, stop: int | None, n: int) -> range:
    """``--start``/``--stop`` as the range of slices to propagate, or a :class:`UsageError`."""
    first = 0 if start is None else start
    end = n if stop is None else stop
    given = f"--start {first} --stop {end}" if stop is not None else f"--start {first}"
    if not 0 <= first < n:
        raise UsageError(f"{given}: the stack has slices 0 to {n - 1}; give --start between 0 and {n - 1}")
    if end <= first:
        raise UsageError(f"{given} selects no slice: --stop is the slice after the last one to propagate, so "
                         f"give {first + 1} ≤ --stop ≤ {n} (the stack has {n} slices)")
    if end > n:
        raise UsageError(f"{given} goes past the last slice: the stack has {n} slices (0 to {n - 1}); "
                         f"give --stop {n} at most")
    return range(first, end)


def cmd_propagate(args: argparse.Namespace, base=None) -> int:
    """Run ``rpsam2 propagate``."""

    from ..io import check_output, write_labels

    out, _ = check_output(args.out, "--out")
    scores = output_file(args.scores, ".csv", "--scores") if args.scores else None
    cache = cache_folder(args.cache)
    if args.stop_after is not None and args.stop_after < 1:
        raise UsageError("--stop-after must be at least 1 (frames)")
    if not np.isfinite(args.stop_threshold):
        raise UsageError(f"--stop-threshold must be a finite number (an object-score logit), not {args.stop_threshold}")
    source = open_input(args.images, args.window)
    slices = slice_range(args.start, args.stop, len(source))
    prompts = read_prompts(args.prompts, slice_names(source), image_hw=tuple(source.data.shape[1:3]),
                           slices=slices)
    model = make_model(args, base, cache_dir=cache)
    from ..app.propagation import PropagationOptions, propagate_stack

    options = PropagationOptions(args.direction, args.start, args.stop, not args.no_refine, args.stop_after,
                                 args.stop_threshold)
    result = run_job(lambda progress, cancel: propagate_stack(model, source.data, prompts, options,
                                                              contrast_limits=source.contrast_limits, rgb=source.rgb,
                                                              progress=progress, cancel=cancel),
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
