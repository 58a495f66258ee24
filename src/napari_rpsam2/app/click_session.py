"""The click session: clicks and a box per slice, the live preview, commits and their undo — without Qt.

A front end (the click dock, a script, a test) feeds user actions into a
:class:`ClickSession` and shows what its :attr:`ClickSession.events` report.
Segmentation itself runs wherever the front end wants (a worker thread): it
asks :meth:`ClickSession.request` what to segment and hands the result back
to :meth:`ClickSession.accept`, which drops results made for clicks that have
changed since (a generation counter).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal, SignalGroup

from .click_commit import CommitError, CommitRecord, plan_commit
from .label_history import LabelHistory, Step

if TYPE_CHECKING:
    from ..model import RPSAM2, SegmentResult

__all__ = ["Click", "ClickSession", "ClickSessionEvents", "Preview", "SegmentRequest"]

Index = tuple[int, ...]
Box = tuple[float, float, float, float]
"""``(top, left, bottom, right)`` in image pixels."""


@dataclass(frozen=True)
class Click:
    """One click ``(row, col)`` in image pixels; ``positive`` False for a background click."""

    row: float
    col: float
    positive: bool = True


@dataclass(frozen=True)
class SegmentRequest:
    """What to segment for the clicks (and box) of one slice, stamped with the session's generation."""

    generation: int
    index: Index
    points: np.ndarray
    labels: np.ndarray
    refine: bool
    box: Box | None = None


@dataclass(frozen=True)
class Preview:
    """The mask shown for the current clicks of one slice (not yet committed)."""

    index: Index
    result: "SegmentResult"
    refine: bool

    @property
    def mask(self) -> np.ndarray:
        """The mask ``(H, W)`` bool."""
        return self.result.mask

    def mean_shift(self) -> float:
        """Mean distance in pixels by which the positive clicks were moved."""
        pos = self.result.labels == 1
        if not pos.any():
            return 0.0
        return float(np.linalg.norm(self.result.points[pos] - self.result.clicks[pos], axis=1).mean())

    def describe(self) -> str:
        """One status line: method, mask size, predicted IoU, click shift."""
        method = "RP-SAM2" if self.refine else "SAM2"
        return (f"{method}: mask of {int(self.mask.sum())} px, predicted IoU {self.result.score:.2f}, "
                f"mean click shift {self.mean_shift():.1f} px.")


class ClickSessionEvents(SignalGroup):
    """Signals of a :class:`ClickSession` (emitted in the thread that called the session)."""

    clicks_changed = Signal(tuple)
    """The clicks of a slice changed (argument: the slice index)."""
    box_changed = Signal(tuple)
    """The box of a slice was drawn, changed or removed (argument: the slice index)."""
    preview_changed = Signal(object)
    """A new preview, or ``None`` when there is none."""
    refine_changed = Signal(bool)
    """RP-SAM2 (True) or plain SAM2 (False)."""
    committed = Signal(object)
    """A preview was written into the target (argument: the :class:`CommitRecord`)."""
    undone = Signal(object)
    """A commit was undone, by any route (argument: its :class:`CommitRecord`)."""
    redone = Signal(object)
    """An undone commit was made again (argument: its :class:`CommitRecord`)."""
    message = Signal(str, str)
    """``(level, text)`` for the person: level ``"info"`` or ``"error"``."""


def _label_array(target: Any) -> Any:
    """The layer's array as it is (a chunked volume is never made dense); an array is itself."""
    return target if isinstance(target, np.ndarray) or not hasattr(target, "data_setitem") else target.data


def _own_history(target: Any) -> LabelHistory:
    """A history kept on the session for a target nobody else keeps one for (a script's array)."""
    if isinstance(target, np.ndarray):
        return LabelHistory(lambda: target)
    return LabelHistory(lambda: target.data, getattr(target, "refresh", lambda: None))  # a layer-like object


class ClickSession:
    """Clicks per slice of one image, the preview of the current slice, commits and their undo.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of the image: ``(H, W)`` or ``(N, ..., H, W)``.
    """

    def __init__(self, shape: Sequence[int]) -> None:
        self.events = ClickSessionEvents()
        self.shape: tuple[int, ...] = tuple(int(n) for n in shape)
        self.target: Any = None
        """Where commits go: a napari Labels layer or an integer array of :attr:`shape`."""
        self.target_alive: Callable[[Any], bool] = lambda target: True
        """Whether an earlier commit's target still exists (the view says; a layer may be deleted)."""
        self._clicks: dict[Index, tuple[Click, ...]] = {}
        self._boxes: dict[Index, Box] = {}
        self._preview: Preview | None = None
        self.history_of: Callable[[Any], LabelHistory | None] = self._history_of
        """The undo history of a target, shared with every other writer (the view sets it: one per Labels layer)."""
        self._histories: dict[int, tuple[Any, LabelHistory]] = {}
        self.last_undone: Step | None = None
        self._refine = True
        self.generation = 0

    # ------------------------------------------------------------------ clicks
    def clicks(self, index: Index) -> tuple[Click, ...]:
        """The clicks of slice ``index`` in the order they were made."""
        return self._clicks.get(tuple(index), ())

    def slices(self) -> dict[Index, tuple[Click, ...]]:
        """Every slice that has clicks, with its clicks."""
        return dict(self._clicks)

    def outside(self, row: float, col: float) -> bool:
        """Whether ``(row, col)`` lies outside the image (beyond the outer pixels' edges)."""
        h, w = self.shape[-2:]
        return not (-0.5 <= row <= h - 0.5 and -0.5 <= col <= w - 0.5)

    def add_click(self, index: Index, row: float, col: float, positive: bool = True) -> bool:
        """Add a click; a click outside the image is refused (message, preview dropped) and gives False."""
        index = self._check_index(index)
        if self.outside(row, col):
            self._set_preview(None)
            h, w = self.shape[-2:]
            self._say("error", f"Click at (row {row:.1f}, col {col:.1f}) is outside the {h}×{w} image and was "
                               "not kept: click inside the image.")
            return False
        self.set_clicks(index, self.clicks(index) + (Click(float(row), float(col), bool(positive)),))
        return True

    def set_clicks(self, index: Index, clicks: Sequence[Click]) -> None:
        """Replace the clicks of a slice (e.g. after the person moved or deleted some); outside ones are dropped."""
        index = self._check_index(index)
        kept = tuple(c for c in clicks if not self.outside(c.row, c.col))
        if len(kept) < len(clicks):
            h, w = self.shape[-2:]
            self._say("error", f"Clicks outside the {h}×{w} image were not kept: click inside the image.")
        if kept == self.clicks(index):
            return
        if kept:
            self._clicks[index] = kept
        else:
            self._clicks.pop(index, None)
        self.generation += 1
        if self._preview is not None and self._preview.index == index:
            self._set_preview(None)
        if not kept and self.box(index) is None:
            self._say("info", "No clicks on this slice: click on an object (Shift-click: background).")
        self.events.clicks_changed.emit(index)

    def remove_click(self, index: Index, i: int) -> None:
        """Remove the ``i``-th click of a slice."""
        clicks = list(self.clicks(index))
        del clicks[i]
        self.set_clicks(index, clicks)

    def clear(self, index: Index) -> None:
        """Remove the clicks and the box of a slice, and its preview."""
        self.set_clicks(index, ())
        self.set_box(index, None)
        self.invalidate()

    # ------------------------------------------------------------------ boxes
    def box(self, index: Index) -> Box | None:
        """The box of slice ``index``, or ``None``."""
        return self._boxes.get(tuple(index))

    def boxes(self) -> dict[Index, Box]:
        """Every slice that has a box, with its box."""
        return dict(self._boxes)

    def set_box(self, index: Index, box: Sequence[float] | None) -> bool:
        """Give slice ``index`` a box (SAM2 takes it with the clicks), or remove it with ``None``.

        The box is clipped to the image; one lying outside it is refused
        (message, False).  Clicks are not needed with a box.
        """
        index = self._check_index(index)
        if box is not None:
            box = self._clip_box(box)
            if box is None:
                self._say("error", "The box lies outside the image and was not kept: draw it over the object.")
                return False
        if box == self.box(index):
            return True
        if box is None:
            self._boxes.pop(index, None)
        else:
            self._boxes[index] = box
        self.generation += 1
        if self._preview is not None and self._preview.index == index:
            self._set_preview(None)
        if box is None and not self.clicks(index):
            self._say("info", "No clicks or box on this slice: click on an object (Shift-click: background) "
                              "or draw a box.")
        self.events.box_changed.emit(index)
        return True

    def _clip_box(self, box: Sequence[float]) -> Box | None:
        """``(top, left, bottom, right)`` sorted and clipped to the pixel centres; None if nothing is left."""
        top, left, bottom, right = (float(v) for v in box)
        top, bottom = sorted((top, bottom))
        left, right = sorted((left, right))
        h, w = self.shape[-2:]
        clipped = (max(top, 0.0), max(left, 0.0), min(bottom, h - 1.0), min(right, w - 1.0))
        if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
            return None
        return clipped

    def _check_index(self, index: Index) -> Index:
        index = tuple(int(i) for i in index)
        lead = self.shape[:-2]
        if len(index) != len(lead) or any(not 0 <= i < n for i, n in zip(index, lead)):
            raise IndexError(f"slice {index} does not exist in an image of shape {self.shape}")
        return index

    # ------------------------------------------------------------------ refine
    @property
    def refine(self) -> bool:
        """RP-SAM2 (True: clicks moved by the shift block) or plain SAM2 (False)."""
        return self._refine

    @refine.setter
    def refine(self, on: bool) -> None:
        if bool(on) != self._refine:
            self._refine = bool(on)
            self.invalidate()
            self.events.refine_changed.emit(self._refine)

    def toggle_refine(self) -> None:
        """Switch between RP-SAM2 and plain SAM2."""
        self.refine = not self._refine

    # ------------------------------------------------------------------ preview
    @property
    def preview(self) -> Preview | None:
        """The preview on screen, or ``None``."""
        return self._preview

    def invalidate(self) -> None:
        """Drop the preview and any result still being computed (slice, model or method changed)."""
        self.generation += 1
        self._set_preview(None)

    def request(self, index: Index) -> SegmentRequest | None:
        """What to segment for slice ``index``; ``None`` (preview dropped, message) when nothing can be."""
        index = self._check_index(index)
        clicks, box = self.clicks(index), self.box(index)
        if box is None and not any(c.positive for c in clicks):
            self._set_preview(None)
            if clicks:
                self._say("error", "Only negative clicks on this slice: add a positive click on the object "
                                   "(or draw a box around it).")
            return None
        points = np.array([[c.row, c.col] for c in clicks], dtype=float).reshape(-1, 2)
        labels = np.array([int(c.positive) for c in clicks], dtype=np.int64)
        return SegmentRequest(self.generation, index, points, labels, self._refine, box)

    def accept(self, request: SegmentRequest, result: "SegmentResult") -> bool:
        """Show ``result`` unless the clicks changed since ``request`` (then it is stale: False)."""
        if request.generation != self.generation:
            return False
        preview = Preview(request.index, result, request.refine)
        self._set_preview(preview)
        self._say("info", preview.describe())
        return True

    def reject(self, request: SegmentRequest, error: str) -> None:
        """Report a failed segmentation (ignored when stale)."""
        if request.generation == self.generation:
            self._set_preview(None)
            self._say("error", f"Segmentation failed: {error}")

    def segment(self, model: "RPSAM2", plane: np.ndarray, index: Index = (), **mapping: Any) -> Preview | None:
        """Segment slice ``index`` now (in this thread) with ``model``; ``mapping`` goes to ``model.segment``."""
        request = self.request(index)
        if request is None:
            return None
        result = model.segment(plane, request.points, request.labels, request.refine, box=request.box, **mapping)
        self.accept(request, result)
        return self._preview

    def _set_preview(self, preview: Preview | None) -> None:
        if preview is None and self._preview is None:
            return
        self._preview = preview
        self.events.preview_changed.emit(preview)

    # ------------------------------------------------------------------ commit / undo
    def _history_of(self, target: Any) -> LabelHistory:
        kept = self._histories.get(id(target))
        if kept is None or kept[0] is not target:
            kept = self._histories[id(target)] = (target, _own_history(target))
        return kept[1]

    @property
    def can_undo(self) -> bool:
        """Whether the target's history holds a step to undo (a commit, or any other write into it)."""
        history = None if self.target is None else self.history_of(self.target)
        return history is not None and history.can_undo

    def commit(self) -> CommitRecord | None:
        """Write the preview into :attr:`target` under the next free id (background pixels only).

        The write is one step of the target's history (:attr:`history_of`).
        The slice's clicks and the preview are cleared; returns the record, or
        ``None`` (with a message) when there is nothing to commit.
        """
        preview = self._preview
        if preview is None:
            self._say("error", "Nothing to commit: click on an object and wait for its preview.")
            return None
        if self.target is None:
            self._say("error", "Cannot commit: no Labels layer chosen to commit into.")
            return None
        try:
            record = plan_commit(_label_array(self.target), preview.index, preview.mask)
        except CommitError as err:
            self._say("error", f"Cannot commit: {err}")
            return None
        (self.history_of(self.target) or self._history_of(self.target)).apply(
            record.change, f"commit of object {record.label_id} ({record.size} px)", owner="click", payload=record,
            on_undo=lambda step: self.events.undone.emit(step.payload),
            on_redo=lambda step: self.events.redone.emit(step.payload))
        self.clear(preview.index)
        name = getattr(self.target, "name", "the labels")
        self._say("info", f"Committed object {record.label_id} ({record.size} px) into '{name}'.")
        self.events.committed.emit(record)
        return record

    def undo(self) -> CommitRecord | None:
        """Undo the newest change of the target (the last commit, or whatever was written into it since).

        A commit's pixels that still hold its id go back to 0; pixels edited
        since are kept.  Returns the commit's record when the step undone was
        a commit, else ``None`` (:attr:`last_undone` is the step, whatever it was).
        """
        target = self.target
        name = getattr(target, "name", "the labels")
        if target is not None and not self.target_alive(target):
            self._say("error", f"The Labels layer of the last commit ('{name}') was deleted; nothing undone.")
            return None
        history = None if target is None else self.history_of(target)
        if history is None or not history.can_undo:
            self._say("error", "Nothing to undo.")
            return None
        step = self.last_undone = history.undo()
        self._say("info", f"Undid the {step.description} in '{name}'.")
        return step.payload if step.owner == "click" else None

    def _say(self, level: str, text: str) -> None:
        self.events.message.emit(level, text)
