"""One undo history per Labels layer, shared by every dock, Ctrl-Z and napari's own painting.

:func:`history_for` gives the :class:`~napari_rpsam2.app.label_history.LabelHistory`
of a Labels layer (made on first use).  Making it

- listens to the layer's ``events.paint`` (napari emits it once per brush
  stroke, fill or erase, and per ``data_setitem``): each adds a marker step,
  which an undo hands back to napari's own ``Labels.undo``;
- binds Ctrl-Z and Ctrl-Shift-Z on that layer (overriding napari's class
  binding for this layer only) to :meth:`LabelHistory.undo` / ``redo``.

Docks write through it: ``history_for(viewer, layer).push(change, description,
owner=..., on_undo=...)`` after writing a :class:`~napari_rpsam2.app.label_changes.LabelChange`
into ``layer.data`` (then ``layer.refresh()``), or ``.apply(change, ...)`` to
write and record in one call.  Their Undo buttons call :func:`undo_latest`.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from app_model.types import KeyCode, KeyMod
from psygnal import Signal

from ..app.label_history import LabelHistory, Step
from ._slicing import full_resolution
from ._workspace import unwrap

if TYPE_CHECKING:
    import napari

__all__ = ["REDO_KEY", "REGISTRY", "UNDO_KEY", "HistoryRegistry", "UndoControl", "can_undo", "describe_undo",
           "history_for", "undo_latest"]

UNDO_KEY = KeyMod.CtrlCmd | KeyCode.KeyZ
REDO_KEY = KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ


class HistoryRegistry:
    """The histories of every Labels layer seen, keyed weakly by the layer; ``changed`` fires for any of them."""

    changed = Signal()

    def __init__(self) -> None:
        self._histories: weakref.WeakKeyDictionary[Any, LabelHistory] = weakref.WeakKeyDictionary()
        self._viewers: weakref.WeakSet[Any] = weakref.WeakSet()

    def get(self, layer: Any) -> LabelHistory | None:
        """The history of ``layer`` if one was made."""
        return self._histories.get(unwrap(layer))

    def history_for(self, viewer: napari.viewer.Viewer, layer: Any) -> LabelHistory:
        """The history of the Labels layer ``layer`` of ``viewer`` (made, and Ctrl-Z bound, on first use)."""
        layer, viewer = unwrap(layer), unwrap(viewer)
        found = self._histories.get(layer)
        if found is None:
            found = self._histories[layer] = _make_history(layer)
            found.events.changed.connect(self.changed.emit)
            if viewer not in self._viewers:
                self._viewers.add(viewer)
                viewer.layers.events.removed.connect(self._on_removed)
        return found

    def _on_removed(self, event: Any) -> None:
        """A deleted layer's records go with it (nothing can write into it any more)."""
        history = self._histories.pop(unwrap(event.value), None)
        if history is not None:
            history.clear()


def _make_history(layer: Any) -> LabelHistory:
    ref = weakref.ref(layer)  # the registry is keyed weakly by the layer: no strong link back to it

    def call(name: str) -> Any:
        def run(*_: Any) -> Any:
            target = ref()
            if target is None:
                return None
            return full_resolution(target) if name == "data" else getattr(target, name)()
        return run

    history = LabelHistory(call("data"), call("refresh"), external_undo=call("undo"), external_redo=call("redo"),
                           external_limit=getattr(layer, "_history_limit", None))
    for _ in range(len(getattr(layer, "_undo_history", ()))):  # painted before the plugin wrote here
        history.mark_external("painting (napari)")
    layer.events.paint.connect(lambda *_: history.mark_external("painting (napari)"))
    layer.bind_key(UNDO_KEY, lambda _layer: history.undo(), overwrite=True)
    layer.bind_key(REDO_KEY, lambda _layer: history.redo(), overwrite=True)
    return history


REGISTRY = HistoryRegistry()


def history_for(viewer: napari.viewer.Viewer, layer: Any) -> LabelHistory:
    """The one undo history of a Labels layer: every dock's writes, napari's painting, Ctrl-Z (see module doc)."""
    return REGISTRY.history_for(viewer, layer)


def describe_undo(layer: Any) -> str:
    """What one undo on ``layer`` would take back (for a button's tooltip), or that there is nothing."""
    history = None if layer is None else REGISTRY.get(layer)
    step = None if history is None else history.latest
    if step is None:
        return "Nothing to undo" + ("" if layer is None else f" in '{layer.name}'")
    return f"Undo the latest change to '{layer.name}': the {step.description} (Ctrl-Z on the layer does the same)"


def undo_latest(viewer: napari.viewer.Viewer, layer: Any) -> Step | None:
    """Undo the newest step of ``layer``'s history, whichever dock (or napari's brush) made it."""
    if layer is None or unwrap(layer) not in unwrap(viewer).layers:
        return None
    return history_for(viewer, layer).undo()


def can_undo(layer: Any) -> bool:
    """Whether ``layer``'s history holds a step."""
    history = None if layer is None else REGISTRY.get(layer)
    return history is not None and history.can_undo


class UndoControl:
    """A dock's Undo button over the history of the Labels layer the dock writes into.

    The button undoes the newest step of that layer, whoever made it (the
    same as Ctrl-Z on the layer); its tooltip names that step, and it is
    enabled only when there is one (and ``enabled()`` allows).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    button : QPushButton
    layer : callable
        The Labels layer the dock writes into now (or ``None``).
    report : callable
        ``report(level, text)`` for the dock's status line.
    enabled : callable, optional
        Extra condition for the button (e.g. no job running).
    """

    def __init__(self, viewer: Any, button: Any, layer: Any, report: Any, enabled: Any = None) -> None:
        self.viewer, self.button, self.layer, self.report = unwrap(viewer), button, layer, report
        self.enabled = enabled or (lambda: True)
        REGISTRY.changed.connect(self.update)
        self.update()

    def update(self, *_: Any) -> None:
        """Enable the button and name the step it would undo."""
        try:
            layer = self.layer()
            self.button.setEnabled(can_undo(layer) and self.enabled())
            self.button.setToolTip(describe_undo(layer))
        except RuntimeError:  # the dock's widgets were deleted
            self.disconnect()

    def undo(self) -> Step | None:
        """Undo the newest step of the layer; the status line says what was undone."""
        layer = self.layer()
        if layer is not None and unwrap(layer) not in self.viewer.layers:
            self.report("error", f"The Labels layer '{layer.name}' was deleted; nothing undone.")
            return None
        step = undo_latest(self.viewer, layer)
        if step is None:
            self.report("error", "Nothing to undo.")
        else:
            self.report("info", f"Undid the {step.description} in '{layer.name}'.")
        return step

    def disconnect(self) -> None:
        """Stop following the histories (the dock closed)."""
        REGISTRY.changed.disconnect(self.update)
