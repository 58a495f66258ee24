"""What the Propagate dock sends as prompts: committed objects, the click dock's clicks, drawn boxes.

Plain functions over arrays (no Qt): the dock reads the layers and the click
session, these turn them into :class:`~napari_rpsam2.model.FramePrompt` objects
with object ids that do not collide with labels already in the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model.prompts import FramePrompt

__all__ = ["UsedPrompts", "box_prompts", "click_prompt", "mask_prompts", "rectangle_box", "rectangle_on_slice"]


def mask_prompts(plane: np.ndarray, index: int) -> list[FramePrompt]:
    """One mask prompt per object id present in the labels ``plane`` of slice ``index``."""
    ids = [int(v) for v in np.unique(plane) if v > 0]
    return [FramePrompt(index, oid, mask=plane == oid) for oid in ids]


def click_prompt(clicks: Sequence[Any], index: int, object_id: int,
                 box: Sequence[float] | None = None) -> FramePrompt | None:
    """The click dock's clicks (and box) of slice ``index`` as one object; ``None`` without a positive click or box.

    ``clicks`` are :class:`~napari_rpsam2.app.click_session.Click` objects (``row``, ``col``, ``positive``).
    """
    if box is None and not any(c.positive for c in clicks):
        return None
    points = np.array([[c.row, c.col] for c in clicks], dtype=float).reshape(-1, 2)
    labels = np.array([int(c.positive) for c in clicks], dtype=np.int64)
    return FramePrompt(index, object_id, points=points if len(points) else None,
                       labels=labels if len(points) else None, box=None if box is None else tuple(box))


def rectangle_on_slice(vertices: np.ndarray, image_hw: tuple[int, int]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``(slice index, (top, left, bottom, right))`` of a rectangle drawn on a Shapes layer (data coordinates).

    The index has one entry per leading axis (``()`` on a 2D image).  The box
    is clipped to the image, so a rectangle dragged a little past the border
    still counts.
    """
    v = np.asarray(vertices, dtype=float)
    index = tuple(round(float(x)) for x in v[0, :-2])
    h, w = image_hw
    top, left = np.clip(v[:, -2].min(), 0, h - 1), np.clip(v[:, -1].min(), 0, w - 1)
    bottom, right = np.clip(v[:, -2].max(), 0, h - 1), np.clip(v[:, -1].max(), 0, w - 1)
    return index, (float(top), float(left), float(bottom), float(right))


def rectangle_box(vertices: np.ndarray, image_hw: tuple[int, int]) -> tuple[int, tuple[float, ...]]:
    """``(slice, (top, left, bottom, right))`` of a rectangle drawn on a 3D Shapes layer (data coordinates)."""
    index, box = rectangle_on_slice(vertices, image_hw)
    return index[0], box


def box_prompts(rectangles: Sequence[np.ndarray], image_hw: tuple[int, int], first_id: int) -> list[FramePrompt]:
    """One new object per drawn rectangle, ids ``first_id, first_id + 1, …``."""
    prompts = []
    for k, vertices in enumerate(rectangles):
        index, box = rectangle_box(vertices, image_hw)
        prompts.append(FramePrompt(index, first_id + k, box=box))
    return prompts


@dataclass
class UsedPrompts:
    """The clicks and boxes one run sent; once their objects are labels they are dropped (no duplicates)."""

    session: Any = None
    index: tuple[int, ...] = ()
    clicks: tuple = ()
    click_box: tuple | None = None  # the click dock's box of that slice
    boxes: Any = None
    rects: list = field(default_factory=list)
    new_ids: tuple[int, ...] = ()  # ids picked for the clicked and boxed objects (not in the labels at start)

    def forget(self) -> None:
        """Remove exactly these clicks and boxes (others, added meanwhile, stay)."""
        if self.session is not None:
            self.session.set_clicks(self.index, [c for c in self.session.clicks(self.index) if c not in self.clicks])
            if self.click_box is not None and self.session.box(self.index) == self.click_box:
                self.session.set_box(self.index, None)
        if self.boxes is not None and len(self.boxes.data):
            gone = {i for i, v in enumerate(self.boxes.data)
                    if any(v.shape == r.shape and np.allclose(v, r) for r in self.rects)}
            if gone:
                self.boxes.selected_data = gone
                self.boxes.remove_selected()
