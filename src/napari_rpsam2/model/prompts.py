"""Prompts for one object on one slice: clicks, a box or a mask, checked with clear messages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["PromptError", "FramePrompt", "check_clicks", "check_box", "box_to_normalized", "merge_prompts",
           "negative_only"]


class PromptError(ValueError):
    """Clicks that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class FramePrompt:
    """What the user gave for one object on one slice.

    Attributes
    ----------
    slice : int
        Index of the slice (frame) in the stack.
    object : int
        Object id, the value its pixels get in the label volume (positive).
    points : ndarray (N, 2), optional
        Clicks ``(row, col)`` in image pixels.
    labels : ndarray (N,), optional
        1 positive (default), 0 negative.
    box : (top, left, bottom, right), optional
        A rectangle in pixels; the corner pixels belong to the box.
    mask : ndarray (H, W) bool, optional
        A finished mask of the object (e.g. a committed label); not with clicks or a box.
    """

    slice: int
    object: int
    points: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)


def check_clicks(points, labels, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Clicks ``(N, 2)`` and their labels ``(N,)`` (1 positive, 0 negative), or :class:`PromptError`."""
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptError("clicks must be numbers, (row, col) pairs in image pixels") from None
    if pts.size == 0:
        pts = np.zeros((0, 2))
    elif pts.ndim == 1 and pts.shape[0] == 2:
        pts = pts[None]
    elif pts.ndim != 2 or pts.shape[1] != 2:
        raise PromptError(
            f"clicks must be (row, col) pairs, an array of shape (N, 2); got shape {pts.shape}"
            + ("; drop the slice index and click on one 2D slice" if pts.ndim == 2 and pts.shape[1] > 2 else "")
        )
    if pts.shape[0] == 0:
        raise PromptError("no clicks given; click on the object first")
    if not np.all(np.isfinite(pts)):
        raise PromptError("a click has a non-finite coordinate (NaN or inf)")
    try:
        lab = np.ones(len(pts), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64).ravel()
    except (TypeError, ValueError):
        raise PromptError("labels must be 1 (positive) or 0 (negative), one per click") from None
    if lab.shape[0] != pts.shape[0]:
        raise PromptError(f"{pts.shape[0]} clicks but {lab.shape[0]} labels; give one label per click")
    if not np.isin(lab, (0, 1)).all():
        raise PromptError("labels must be 1 (positive) or 0 (negative)")
    h, w = image_hw
    outside = (pts[:, 0] < -0.5) | (pts[:, 0] > h - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > w - 0.5)
    if outside.any():
        bad = pts[np.argmax(outside)]
        raise PromptError(
            f"click at (row {bad[0]:.1f}, col {bad[1]:.1f}) is outside the {h}×{w} image; "
            "click inside the image"
        )
    return pts, lab


def check_box(box: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray:
    """``(top, left, bottom, right)`` as a float array, or :class:`PromptError` saying what is wrong."""
    try:
        b = np.asarray(box, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise PromptError("a box must be four numbers: top, left, bottom, right (pixels)") from None
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise PromptError(f"a box must be four finite numbers (top, left, bottom, right); got {box!r}")
    top, left, bottom, right = b
    text = f"box (top {top:g}, left {left:g}, bottom {bottom:g}, right {right:g})"
    if bottom < top or right < left:
        raise PromptError(f"{text} has bottom above top or right left of left; give (top, left, bottom, right)")
    h, w = image_hw
    if top < -0.5 or left < -0.5 or bottom > h - 0.5 or right > w - 0.5:
        raise PromptError(f"{text} reaches outside the {h}×{w} image; draw it inside the image")
    return b


def negative_only(prompt: FramePrompt) -> bool:
    """Whether ``prompt`` holds clicks that are all negative and no box or mask.

    Such a prompt says only where the object is *not*: on a slice where the
    object has no mask yet, SAM2 then guesses an object (often most of the
    image), so it is refused there; on a tracked slice it corrects the mask.
    """
    if prompt.box is not None or prompt.mask is not None or prompt.points is None:
        return False
    n = len(np.asarray(prompt.points).reshape(-1, 2))
    labels = np.ones(n) if prompt.labels is None else np.asarray(prompt.labels).ravel()
    return n > 0 and not bool((labels == 1).any())


def box_to_normalized(box: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Box corners as two ``(x, y)`` points of the normalized frame (SAM2 labels them 2 and 3)."""
    h, w = image_hw
    top, left, bottom, right = box
    return np.array([[(left + 0.5) / w, (top + 0.5) / h], [(right + 0.5) / w, (bottom + 0.5) / h]])


def _check_mask(mask, image_hw: tuple[int, int], where: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != tuple(image_hw):
        raise PromptError(f"{where}: the mask has shape {m.shape}, the slices are {tuple(image_hw)}")
    m = m != 0
    if not m.any():
        raise PromptError(f"{where}: the mask is empty; paint the object first")
    return m


def merge_prompts(prompts: Iterable[FramePrompt], image_hw: tuple[int, int],
                  num_slices: int) -> dict[tuple[int, int], FramePrompt]:
    """One prompt per ``(object, slice)``: clicks joined in order; at most one box and one mask."""
    merged: dict[tuple[int, int], FramePrompt] = {}
    for p in prompts:
        if not isinstance(p, FramePrompt):
            raise PromptError(f"prompts must be FramePrompt objects, got {type(p).__name__}")
        obj, sl = int(p.object), int(p.slice)
        where = f"object {obj} on slice {sl}"
        if obj <= 0 or obj >= 2**31:
            raise PromptError(f"object ids must be positive label values (1, 2, …); got {obj}")
        if not 0 <= sl < num_slices:
            raise PromptError(f"{where}: the stack has slices 0 to {num_slices - 1}")
        if p.points is None and p.box is None and p.mask is None:
            raise PromptError(f"{where}: give clicks, a box or a mask")
        old = merged.get((obj, sl))
        points, labels = p.points, p.labels
        if points is not None and len(np.asarray(points)) and labels is None:
            labels = np.ones(len(np.asarray(points)), dtype=np.int64)
        if old is not None:
            if (old.box is not None and p.box is not None) or (old.mask is not None and p.mask is not None):
                raise PromptError(f"{where}: give one box and one mask at most")
            if old.points is not None and points is not None:
                points = np.concatenate([np.asarray(old.points, float).reshape(-1, 2),
                                         np.asarray(points, float).reshape(-1, 2)])
                labels = np.concatenate([np.asarray(old.labels).ravel(), np.asarray(labels).ravel()])
            elif old.points is not None:
                points, labels = old.points, old.labels
        box = p.box if p.box is not None else (old.box if old else None)
        mask = p.mask if p.mask is not None else (old.mask if old else None)
        if mask is not None:
            if box is not None or (points is not None and len(np.asarray(points))):
                raise PromptError(f"{where}: a mask cannot be combined with clicks or a box on the same slice")
            mask = _check_mask(mask, image_hw, where)
        if box is not None:
            box = tuple(check_box(box, image_hw))
        merged[(obj, sl)] = FramePrompt(sl, obj, points, labels, box, mask)
    if not merged:
        raise PromptError("no prompts given: click, draw a box or paint a mask on at least one slice")
    return merged
