"""One undo history per label image, shared by every writer: the plugin's runs and the person's own painting.

Every write the plugin makes into a label image (a click commit, a
propagation, a one-shot run or re-run, an automatic run) is one
:class:`Step` holding its compact :class:`~.label_changes.LabelChange`.  A
painting tool that keeps its own history (napari's brush, fill and eraser)
adds a *marker* step instead (:meth:`LabelHistory.mark_external`); undoing a
marker asks that tool to undo its latest step.  So one undo always takes back
the newest change, whoever made it, and the undone steps can be redone in
order.

A step may carry callbacks (``on_undo``, ``on_redo``) for what else goes
with it: e.g. the clicks a one-shot run showed, or recording the undo in
the work folder.  Qt- and napari-free; what the history writes into is a
callable giving the current label array.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psygnal import Signal, SignalGroup

from .label_changes import LabelChange

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_STEPS", "LabelHistory", "LabelHistoryEvents", "Step", "undo_together"]

DEFAULT_MAX_BYTES = 256 * 2**20
"""Records kept per label image (undo and redo together); the oldest steps go first past it."""
DEFAULT_MAX_STEPS = 100
"""Steps kept per label image (napari keeps 100 painting steps per Labels layer too)."""

Callback = Callable[["Step"], None]


@dataclass(eq=False)
class Step:
    """One undoable change of a label image.

    Attributes
    ----------
    description : str
        What the person did, for buttons and messages (e.g. ``"propagation of object 3"``).
    owner : str
        Who wrote it: ``"click"``, ``"propagate"``, ``"one-shot"``, ``"autoseg"``… or ``"painting"`` for a marker.
    change : LabelChange or None
        The plugin's write; ``None`` for a marker of a step the painting tool keeps itself.
    payload : object
        Anything the writer wants back (e.g. the click dock's :class:`~.click_commit.CommitRecord`).
    on_undo, on_redo : list of callables
        Called with the step after it was undone / redone (more may be appended after the push).
    """

    description: str
    owner: str
    change: LabelChange | None = None
    payload: Any = None
    on_undo: list[Callback] = field(default_factory=list)
    on_redo: list[Callback] = field(default_factory=list)

    @property
    def external(self) -> bool:
        """Whether this is a marker of the painting tool's own history (no record held here)."""
        return self.change is None

    @property
    def nbytes(self) -> int:
        """Bytes of the record held (0 for a marker)."""
        return 0 if self.change is None else self.change.nbytes


class LabelHistoryEvents(SignalGroup):
    """Signals of a :class:`LabelHistory`."""

    changed = Signal()
    """A step was pushed, undone, redone or dropped (buttons update their text and state)."""
    undone = Signal(object)
    """A step was undone (argument: the :class:`Step`)."""
    redone = Signal(object)
    """A step was redone (argument: the :class:`Step`)."""


def _noop() -> None:
    return None


class LabelHistory:
    """The undo and redo stacks of one label image.

    Parameters
    ----------
    labels : callable
        Gives the label array the steps apply to (read and written in place).
    refresh : callable, optional
        Called after the history changed the array (a view redraws).
    external_undo, external_redo : callable, optional
        Undo / redo the painting tool's latest step (for markers), e.g. napari's ``Labels.undo``.
    external_limit : int, optional
        How many steps the painting tool keeps; older markers are dropped (they could not be undone).
    max_bytes, max_steps : int
        Bound on the records and on the steps kept; the oldest steps go first.
    """

    def __init__(self, labels: Callable[[], Any], refresh: Callable[[], None] = _noop, *,
                 external_undo: Callable[[], None] = _noop, external_redo: Callable[[], None] = _noop,
                 external_limit: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_steps: int = DEFAULT_MAX_STEPS) -> None:
        self.events = LabelHistoryEvents()
        self.labels, self.refresh = labels, refresh
        self.external_undo, self.external_redo = external_undo, external_redo
        self.external_limit, self.max_bytes, self.max_steps = external_limit, int(max_bytes), int(max_steps)
        self._undo: deque[Step] = deque()
        self._redo: list[Step] = []

    # ------------------------------------------------------------------ recording
    def push(self, change: LabelChange, description: str, *, owner: str = "plugin", payload: Any = None,
             on_undo: Callback | None = None, on_redo: Callback | None = None) -> Step:
        """Record a write already made into :attr:`labels` (the redo stack is cleared); returns its step."""
        step = Step(description, owner, change, payload, [on_undo] if on_undo else [], [on_redo] if on_redo else [])
        self._record(step)
        return step

    def apply(self, change: LabelChange, description: str, **kwargs: Any) -> Step:
        """Write ``change`` into :attr:`labels` (where the old values are still there), then :meth:`push` it."""
        change.redo(self.labels())
        self.refresh()
        return self.push(change, description, **kwargs)

    def mark_external(self, description: str = "painting") -> Step:
        """Record that the painting tool made one step of its own (undone through ``external_undo``)."""
        step = Step(description, "painting")
        self._record(step)
        return step

    def _record(self, step: Step) -> None:
        self._undo.append(step)
        self._redo.clear()
        self._trim()
        self.events.changed.emit()

    def _trim(self) -> None:
        """Drop the oldest steps past the bounds (and markers the painting tool has forgotten)."""
        if self.external_limit is not None:
            markers = [s for s in self._undo if s.external]
            for old in markers[:max(0, len(markers) - self.external_limit)]:
                self._undo.remove(old)
        while self._undo and (len(self._undo) + len(self._redo) > self.max_steps or self.nbytes > self.max_bytes):
            self._undo.popleft()

    # ------------------------------------------------------------------ state
    @property
    def can_undo(self) -> bool:
        """Whether there is a step to undo."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """Whether there is an undone step to redo."""
        return bool(self._redo)

    @property
    def latest(self) -> Step | None:
        """The step :meth:`undo` would take back, or ``None``."""
        return self._undo[-1] if self._undo else None

    @property
    def next_redo(self) -> Step | None:
        """The step :meth:`redo` would write again, or ``None``."""
        return self._redo[-1] if self._redo else None

    def steps(self) -> list[Step]:
        """The steps that can be undone, oldest first."""
        return list(self._undo)

    @property
    def nbytes(self) -> int:
        """Bytes of all records held (undo and redo)."""
        return sum(s.nbytes for s in self._undo) + sum(s.nbytes for s in self._redo)

    def clear(self) -> None:
        """Forget every step (e.g. the label image was replaced)."""
        self._undo.clear()
        self._redo.clear()
        self.events.changed.emit()

    # ------------------------------------------------------------------ undo / redo
    def undo(self) -> Step | None:
        """Take back the newest step; returns it, or ``None`` when there is none.

        A plugin write puts the old values back where its own values are still
        there (pixels edited since keep theirs); a marker calls ``external_undo``.
        """
        if not self._undo:
            return None
        step = self._undo.pop()
        if step.external:
            self.external_undo()
        else:
            step.change.undo(self.labels())
            self.refresh()
        self._redo.append(step)
        for callback in step.on_undo:
            callback(step)
        self.events.undone.emit(step)
        self.events.changed.emit()
        return step

    def redo(self) -> Step | None:
        """Make the newest undone step again; returns it, or ``None`` when there is none."""
        if not self._redo:
            return None
        step = self._redo.pop()
        if step.external:
            self.external_redo()
        else:
            step.change.redo(self.labels())
            self.refresh()
        self._undo.append(step)
        for callback in step.on_redo:
            callback(step)
        self.events.redone.emit(step)
        self.events.changed.emit()
        return step


def undo_together(steps: list[tuple[LabelHistory, Step]]) -> None:
    """Tie steps of several label images (one run's writes) so undoing or redoing one does all of them.

    Each step's ``on_undo`` undoes the others that are still the newest of their
    history, and ``on_redo`` redoes the others that are next to be redone; a step
    edited over since (another step came after it) is left alone.
    """
    for history, step in steps:
        others = [(h, s) for h, s in steps if s is not step]

        def undo_others(_step: Step, others=others) -> None:
            for h, s in others:
                if h.latest is s:
                    h.undo()

        def redo_others(_step: Step, others=others) -> None:
            for h, s in others:
                if h.next_redo is s:
                    h.redo()

        step.on_undo.append(undo_others)
        step.on_redo.append(redo_others)
