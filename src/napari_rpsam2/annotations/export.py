"""Exports of a work folder: the label volume, the prompts CSV of ``rpsam2 propagate``, COCO-style JSON.

Every writer is atomic (a temporary file renamed into place).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from ..io.label_volume import is_chunked, label_ids, label_max, planes_in_use

__all__ = ["write_labels", "prompt_rows", "write_prompts_csv", "coco_json", "write_coco", "PROMPT_COLUMNS"]

PROMPT_COLUMNS = ("slice", "object", "row", "col", "label", "top", "left", "bottom", "right")
_PROMPT_KINDS = ("commit", "propagation")


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write the label volume as a TIFF stack (one page per slice; 16-bit when the ids fit, else 32-bit)."""
    import tifffile

    if is_chunked(labels) and labels.ndim > 2:  # a chunked volume: read and written one slice at a time
        hi = label_max(labels)
        lo = min([0, *(int(np.asarray(labels[ix]).min()) for ix in planes_in_use(labels))])
        dtype = np.int32 if lo < 0 else (np.uint16 if hi < 1 << 16 else np.uint32)
        shape = tuple(labels.shape)
        planes = (np.asarray(labels[ix]).astype(dtype) for ix in np.ndindex(*shape[:-2]))
        return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, planes, shape=shape, dtype=dtype,
                                                              compression="zlib", photometric="minisblack"))
    labels = np.asarray(labels)
    hi = int(labels.max()) if labels.size else 0
    lo = int(labels.min()) if labels.size else 0
    dtype = np.int32 if lo < 0 else (np.uint16 if hi < 1 << 16 else np.uint32)
    return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib"))


def _slice_number(index: Sequence[int]) -> int | None:
    """The CSV's ``slice`` column of a prompt's slice index (None for a 4-D index, which the CSV cannot name)."""
    index = list(index) if isinstance(index, (list, tuple)) else [index]
    return 0 if not index else (int(index[0]) if len(index) == 1 else None)


def prompt_rows(events: Iterable[Mapping]) -> tuple[list[dict], int]:
    """CSV rows (:data:`PROMPT_COLUMNS`) of the clicks and boxes of commits and propagations.

    Returns the rows and how many prompts could not be written as rows (mask
    prompts, slices of a 4-D image).
    """
    rows, left_out = [], 0
    for event in events:
        if event.get("kind") not in _PROMPT_KINDS:
            continue
        for prompt in event.get("prompts", ()):
            sl, obj = _slice_number(prompt.get("slice", ())), int(prompt["object"])
            clicks, box = prompt.get("clicks") or [], prompt.get("box")
            if sl is None or (not clicks and box is None):
                left_out += 1
                continue
            for (row, col), label in zip(clicks, prompt.get("labels") or [1] * len(clicks)):
                rows.append({"slice": sl, "object": obj, "row": _num(row), "col": _num(col), "label": int(label)})
            if box is not None:
                rows.append({"slice": sl, "object": obj, **dict(zip(PROMPT_COLUMNS[5:], map(_num, box)))})
    return rows, left_out


def _num(value: float) -> float | int:
    value = float(value)
    return int(value) if value.is_integer() else round(value, 3)


def write_prompts_csv(path: str | os.PathLike, rows: Sequence[Mapping]) -> Path:
    """Write prompt rows as the CSV ``rpsam2 propagate --prompts`` reads."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=PROMPT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    text = buf.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline=""))


def coco_json(labels: np.ndarray, *, frame_names: Sequence[str] | None = None,
              class_names: Mapping[int, str] | None = None, description: str = "") -> dict:
    """COCO-style annotations of a label volume: one image per frame, one instance mask (RLE) per object.

    Parameters
    ----------
    labels : ndarray (H, W) or (N, H, W)
        Instance labels (0 background).
    frame_names : sequence of str, optional
        File name of each frame (default ``frame_00000.png``...).
    class_names : mapping, optional
        ``object id -> class name``; objects not named are class ``"object"``.
    """
    from pycocotools import mask as mask_utils

    labels = labels if is_chunked(labels) else np.asarray(labels)  # chunked: read one frame at a time
    stack = np.asarray(labels)[None] if labels.ndim == 2 else labels
    if stack.ndim != 3:
        raise ValueError(f"labels of shape {labels.shape} cannot be exported as COCO; give (H, W) or (N, H, W)")
    n, height, width = stack.shape
    names = list(frame_names) if frame_names is not None else [f"frame_{i:05d}.png" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} frame names for {n} frames; give one name per frame")
    class_names = {int(k): str(v) for k, v in (class_names or {}).items()}
    ids = [int(i) for i in label_ids(stack)]
    categories = sorted({class_names.get(i, "object") for i in ids}) or ["object"]
    category_id = {name: k + 1 for k, name in enumerate(categories)}
    images, annotations = [], []
    for f in range(n):
        images.append({"id": f + 1, "file_name": names[f], "width": int(width), "height": int(height),
                       "frame_index": f})
        frame = np.asarray(stack[f])
        present = [int(i) for i in np.unique(frame) if i != 0]
        if not present:
            continue
        masks = np.asfortranarray(np.stack([frame == i for i in present], axis=-1).astype(np.uint8))
        for i, rle in zip(present, mask_utils.encode(masks)):
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            annotations.append({"id": len(annotations) + 1, "image_id": f + 1,
                                "category_id": category_id[class_names.get(i, "object")],
                                "segmentation": {"size": [int(height), int(width)],
                                                 "counts": rle["counts"].decode("ascii")},
                                "area": float(mask_utils.area(rle)), "bbox": [x, y, w, h], "iscrowd": 0,
                                "object_id": i})
    return {"info": {"description": description or "napari-rpsam2 export"}, "images": images,
            "annotations": annotations,
            "categories": [{"id": category_id[c], "name": c} for c in categories]}


def write_coco(path: str | os.PathLike, coco: Mapping) -> Path:
    """Write COCO-style JSON atomically."""
    text = json.dumps(coco)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
