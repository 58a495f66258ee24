"""The prompts CSV of ``rpsam2 propagate``, read and checked in full before any model work.

One prompt per row, with a header naming the columns: ``slice,object,row,col,label``
for a click (``label`` 1 positive, 0 negative; 1 when empty) and
``slice,object,top,left,bottom,right`` for a box; one file may mix both kinds.
Every error names the line of the file and the values as written there.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .support import UsageError, existing_file

__all__ = ["read_prompts"]

CLICK = ("row", "col")
BOX = ("top", "left", "bottom", "right")


def _plain(value: float) -> str:
    """A number as a person writes it: ``200``, ``12.5``."""
    return f"{float(value):g}"


def _number(row: dict, name: str, line: int, integer: bool = False):
    text = (row.get(name) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"prompts line {line}: column '{name}' must be a number, got {text!r}") from None
    if not np.isfinite(value):
        raise UsageError(f"prompts line {line}: column '{name}' must be a finite number, got {text!r}")
    if integer and value != int(value):
        raise UsageError(f"prompts line {line}: column '{name}' must be a whole number, got {text!r}")
    return int(value) if integer else value


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


def _check_click(point: tuple[float, float], label: int, line: int, image_hw) -> None:
    if label not in (0, 1):
        raise UsageError(f"prompts line {line}: label must be 1 (positive) or 0 (negative), got {label}")
    if image_hw is None:
        return
    h, w = image_hw
    r, c = point
    if not (-0.5 <= r <= h - 0.5 and -0.5 <= c <= w - 0.5):
        raise UsageError(f"prompts line {line}: click (row {_plain(r)}, col {_plain(c)}) is outside the "
                         f"{h}×{w} image (rows 0 to {h - 1}, cols 0 to {w - 1})")


def _check_box(box: tuple[float, ...], line: int, image_hw) -> None:
    top, left, bottom, right = box
    text = f"box (top {_plain(top)}, left {_plain(left)}, bottom {_plain(bottom)}, right {_plain(right)})"
    if bottom < top or right < left:
        raise UsageError(f"prompts line {line}: {text} has bottom above top or right left of left; "
                         "give top ≤ bottom and left ≤ right")
    if image_hw is not None:
        h, w = image_hw
        if top < -0.5 or left < -0.5 or bottom > h - 0.5 or right > w - 0.5:
            raise UsageError(f"prompts line {line}: {text} reaches outside the {h}×{w} image "
                             f"(rows 0 to {h - 1}, cols 0 to {w - 1})")


def _check_slice(sl: int, line: int, n_slices: int | None, slices: range | None) -> None:
    if n_slices is not None and not 0 <= sl < n_slices:
        raise UsageError(f"prompts line {line}: slice {sl} is not in the stack; it has slices 0 to {n_slices - 1}")
    if slices is not None and sl not in slices:
        raise UsageError(f"prompts line {line}: slice {sl} lies outside the range --start {slices.start} "
                         f"--stop {slices.stop} (slices {slices.start} to {slices.stop - 1}); widen the range "
                         "or remove the row")


def _check_groups(groups: dict[tuple[int, int], list[tuple[int, str, int]]]) -> None:
    """Per object and slice: at most one box, and a positive click or a box (not negative clicks alone)."""
    for (obj, sl), rows in groups.items():
        lines = [line for line, _, _ in rows]
        boxes = [line for line, kind, _ in rows if kind == "box"]
        if len(boxes) > 1:
            raise UsageError(f"prompts lines {', '.join(map(str, boxes))}: object {obj} has {len(boxes)} boxes on "
                             f"slice {sl}; give one box per object and slice")
        if not boxes and not any(kind == "click" and label == 1 for _, kind, label in rows):
            where = f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(map(str, lines))}"
            raise UsageError(f"prompts {where}: object {obj} on slice {sl} has only negative clicks; add a "
                             "positive click (label 1) or a box there (a negative click only says where the "
                             "object is not)")


def read_prompts(path: str | Path, names: dict[str, int] | None = None, *,
                 image_hw: tuple[int, int] | None = None, slices: range | None = None) -> list:
    """The prompts of a CSV file as :class:`~napari_rpsam2.model.FramePrompt` objects, every row checked.

    ``names`` (see :func:`napari_rpsam2.cli.propagate.slice_names`) lets the
    ``slice`` column name slices instead of numbering them and fixes the
    number of slices; ``image_hw`` checks that clicks and boxes lie inside the
    image, ``slices`` that every prompt lies in the range to propagate.
    Raises :class:`UsageError` naming the line.
    """
    from ..model import FramePrompt

    n_slices = None if names is None else len(set(names.values()))
    prompts, groups = [], {}
    with open(existing_file(str(path), "prompts"), newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        if not {"slice", "object"} <= columns or not (set(CLICK) <= columns or set(BOX) <= columns):
            raise UsageError(f"prompts {path} needs a header with slice,object and row,col[,label] "
                             f"and/or top,left,bottom,right; found {sorted(columns)}")
        for line, row in enumerate(reader, start=2):
            sl, obj = _slice(row, line, names, n_slices or 0), _number(row, "object", line, True)
            if obj < 1:
                raise UsageError(f"prompts line {line}: object ids are 1, 2, … (0 is background), got {obj}")
            _check_slice(sl, line, n_slices, slices)
            has_click = any((row.get(c) or "").strip() for c in CLICK)
            has_box = any((row.get(c) or "").strip() for c in BOX)
            if has_click == has_box:
                raise UsageError(f"prompts line {line}: give either row,col (a click) or "
                                 "top,left,bottom,right (a box)")
            if has_click:
                label = _number(row, "label", line, True) if (row.get("label") or "").strip() else 1
                point = (_number(row, "row", line), _number(row, "col", line))
                _check_click(point, label, line, image_hw)
                prompts.append(FramePrompt(sl, obj, points=np.array([point]), labels=np.array([label])))
                groups.setdefault((obj, sl), []).append((line, "click", label))
            else:
                box = tuple(_number(row, c, line) for c in BOX)
                _check_box(box, line, image_hw)
                prompts.append(FramePrompt(sl, obj, box=box))
                groups.setdefault((obj, sl), []).append((line, "box", 1))
    if not prompts:
        raise UsageError(f"prompts {path} has no rows; add at least one click or box")
    _check_groups(groups)
    return prompts
