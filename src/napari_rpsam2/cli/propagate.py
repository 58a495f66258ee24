"""``rpsam2 propagate``: follow objects through an image stack from prompts in a CSV file.

``prompts.csv`` holds one prompt per row, with a header naming the columns:
``slice,object,row,col,label`` for a click (``label`` 1 positive, 0 negative;
1 when empty) and ``slice,object,top,left,bottom,right`` for a box.  One file
may mix both kinds (leave the other columns empty).  Slices count from 0 in
the order of the image files (or the pages of the TIFF); a slice may also be
named as ``rpsam2 oneshot`` names it in its ``prompts.csv`` (the image file's
name without extension, or ``<tiff name>_0007`` for page 7), so that file can
be given here as it is, or by its file name with the extension.  A number that
is also the name of another slice's file is refused as ambiguous.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .support import UsageError, existing_file, make_model, output_file, run_job

__all__ = ["add_parser", "cmd_propagate", "read_prompts", "open_stack", "slice_names"]

_CLICK = ("row", "col")
_BOX = ("top", "left", "bottom", "right")


class FolderStack:
    """The image files of a folder as a lazy ``(N, H, W[, 3])`` stack: a slice is read when indexed."""

    def __init__(self, files: list[Path]) -> None:
        from ..training.data import read_image_file

        self._read, self.files = read_image_file, files
        first = read_image_file(files[0])
        self.shape, self.dtype, self.ndim = (len(files), *first.shape), first.dtype, first.ndim + 1

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        plane = self._read(self.files[int(index)])
        if plane.shape != self.shape[1:]:
            raise UsageError(f"{self.files[int(index)].name} has shape {plane.shape}, the first image "
                             f"{self.shape[1:]}; all images of a stack must have one size")
        return plane


def open_stack(path: str):
    """A folder of PNG/TIFF files (read lazily) or one multi-page TIFF."""
    p = Path(path).expanduser()
    if p.is_dir():
        from ..training.data import list_image_files

        return FolderStack(list_image_files(p))
    existing_file(path, "images")
    if p.suffix.lower() not in (".tif", ".tiff"):
        raise UsageError(f"--images {p} must be a folder of images or a .tif stack")
    import tifffile

    stack = tifffile.memmap(p, mode="r") if _uncompressed(p) else tifffile.imread(p)
    if stack.ndim not in (3, 4):
        raise UsageError(f"{p} has shape {stack.shape}; a stack is (N, H, W) or (N, H, W, 3)")
    return stack


def _uncompressed(path: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tif.series[0].dataoffset is not None
    except Exception:
        return False


def _number(row: dict, name: str, line: int, integer: bool = False):
    text = (row.get(name) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"prompts line {line}: column '{name}' must be a number, got {text!r}") from None
    if integer and value != int(value):
        raise UsageError(f"prompts line {line}: column '{name}' must be a whole number, got {text!r}")
    return int(value) if integer else value


def slice_names(path: str, stack) -> dict[str, int]:
    """``name -> slice`` as ``rpsam2 oneshot`` names slices (file stems, ``<tiff stem>_0007``), and file names."""
    if isinstance(stack, FolderStack):
        return {**{f.name: i for i, f in enumerate(stack.files)}, **{f.stem: i for i, f in enumerate(stack.files)}}
    return {f"{Path(path).stem}_{i:04d}": i for i in range(len(stack))}


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


def _write_tiff(labels: np.ndarray, out: Path) -> None:
    import tifffile

    from .._atomic import atomic_write

    atomic_write(out, lambda tmp: tifffile.imwrite(tmp, labels, compression="zlib"))


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

    out = output_file(args.out, ".tif")
    scores = output_file(args.scores, ".csv") if args.scores else None
    if args.stop_after is not None and args.stop_after < 1:
        raise UsageError("--stop-after must be at least 1 (frames)")
    stack = open_stack(args.images)
    prompts = read_prompts(args.prompts, slice_names(args.images, stack))
    cache = Path(args.cache).expanduser() if args.cache else None
    model = make_model(args, base, cache_dir=cache)
    from ..app.propagation import PropagationOptions, propagate_stack

    options = PropagationOptions(args.direction, args.start, args.stop, not args.no_refine, args.stop_after,
                                 args.stop_threshold)
    result = run_job(lambda progress, cancel: propagate_stack(model, stack, prompts, options, progress=progress,
                                                              cancel=cancel),
                     quiet=args.quiet, stage="frames", what="propagation")
    _write_tiff(result.labels, out)
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
    sp.add_argument("--images", required=True, help="folder of images (one per slice) or a .tif stack")
    sp.add_argument("--prompts", required=True, help="CSV: slice,object,row,col,label and/or "
                                                     "slice,object,top,left,bottom,right")
    sp.add_argument("--out", required=True, help="label stack to write (.tif)")
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
