"""Small Qt helpers shared by the dock widgets: layer pickers, thread workers, progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QLabel

if TYPE_CHECKING:
    import napari

    from ..model import RPSAM2

__all__ = ["LayerPicker", "Bridge", "CancelFlag", "ClickModelUser", "StatusLabel", "bind_keys", "cancel_when_destroyed",
           "error_text", "find_click_widget", "is_plugin_layer", "PLUGIN_LAYER_KEY", "prepare_torch_optimizers",
           "start_worker", "unbind_keys", "unwrap"]

PLUGIN_LAYER_KEY = "napari_rpsam2"
"""Key in a layer's ``metadata`` marking the plugin's own layers (preview, clicks, heatmaps...)."""


def unwrap(obj: Any) -> Any:
    """The object behind napari's public-only proxy (a viewer or a layer), or ``obj`` itself."""
    return getattr(obj, "__wrapped__", obj)


def is_plugin_layer(layer: Any) -> bool:
    """Whether ``layer`` is one of the plugin's own layers (marked with :data:`PLUGIN_LAYER_KEY`)."""
    metadata = getattr(layer, "metadata", None)
    return isinstance(metadata, dict) and PLUGIN_LAYER_KEY in metadata


class LayerPicker(QComboBox):
    """A combo box of the viewer's layers of some types, kept up to date.

    Layers are stored as item data, so renaming a layer never breaks the
    choice; no layer name is assumed.  The plugin's own layers (see
    :func:`is_plugin_layer`) are never listed.  Layers are compared by the
    object behind napari's public-only proxy, so a layer a dock made through
    its proxy viewer is found.
    """

    def __init__(self, viewer: "napari.viewer.Viewer", layer_types: tuple[type, ...],
                 *, allow_none: str | None = None, exclude: Callable[[Any], bool] | None = None,
                 parent=None) -> None:
        super().__init__(parent)
        self._viewer = unwrap(viewer)
        self._types = layer_types
        self._none = allow_none
        self._exclude = exclude
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        events = self._viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.refresh)
        self.refresh()

    def disconnect_viewer(self) -> None:
        """Stop following the viewer's layer list (the widget is closing)."""
        events = self._viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.disconnect(self.refresh)
        for layer in self._viewer.layers:
            layer.events.name.disconnect(self.refresh)

    def refresh(self, *_: Any) -> None:
        """Rebuild the list, keeping the current choice when it still exists."""
        current = self.layer()
        self.blockSignals(True)
        self.clear()
        if self._none is not None:
            self.addItem(self._none, None)
        for layer in self._viewer.layers:
            if is_plugin_layer(layer) or (self._exclude and self._exclude(layer)):
                continue
            if isinstance(layer, self._types):
                self.addItem(layer.name, layer)
                layer.events.name.disconnect(self.refresh)
                layer.events.name.connect(self.refresh)
        index = self.findData(current) if current is not None else -1
        if index < 0 and current is None and self._none is None and self.count():
            index = 0
        self.setCurrentIndex(max(index, 0) if self.count() else -1)
        self.blockSignals(False)
        if self.layer() is not current:
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self) -> Any:
        """The chosen layer, or ``None``."""
        return self.currentData() if self.count() else None

    def set_layer(self, layer: Any) -> None:
        """Choose ``layer`` (no-op if it is not listed)."""
        index = self.findData(unwrap(layer))
        if index >= 0:
            self.setCurrentIndex(index)


class Bridge(QObject):
    """Carries progress and per-epoch messages from a worker thread to the GUI thread."""

    progress = Signal(int, int)
    message = Signal(object)

    def send_progress(self, done: int, total: int) -> None:
        """Emit :attr:`progress` from any thread (dropped once the widget is gone)."""
        try:
            self.progress.emit(done, total)
        except RuntimeError:  # the widget was deleted while the worker ran
            pass

    def send(self, message: object) -> None:
        """Emit :attr:`message` from any thread (dropped once the widget is gone)."""
        try:
            self.message.emit(message)
        except RuntimeError:
            pass


class StatusLabel(QLabel):
    """A word-wrapped status line: info in the palette colour, errors in red."""

    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)

    def info(self, text: str) -> None:
        """Show a normal message."""
        self.setStyleSheet("")
        self.setText(text)

    def error(self, text: str) -> None:
        """Show what went wrong and what to do."""
        self.setStyleSheet("color: #ff6b6b;")
        self.setText(text)


def start_worker(func: Callable[..., Any], *args: Any, on_return: Callable[[Any], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None,
                 on_finish: Callable[[], None] | None = None, **kwargs: Any):
    """Run ``func(*args, **kwargs)`` in a napari thread worker and connect the callbacks.

    Returns the started worker.
    """
    from napari.qt.threading import create_worker

    connect: dict[str, Callable] = {}
    if on_return is not None:
        connect["returned"] = _guard(on_return)
    if on_error is not None:
        connect["errored"] = _guard(on_error)
    if on_finish is not None:
        connect["finished"] = _guard(on_finish)
    worker = create_worker(func, *args, _start_thread=False, _connect=connect, **kwargs)
    worker.start()
    return worker


def _guard(callback: Callable[..., None]) -> Callable[..., None]:
    """Ignore a callback whose widget was deleted while the worker ran (viewer closed)."""

    def call(*args: Any) -> None:
        try:
            callback(*args)
        except RuntimeError as err:
            if "deleted" not in str(err):
                raise

    return call


class CancelFlag:
    """A thread-safe cancel flag usable as ``cancel=flag`` callback."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Ask the running job to stop."""
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


def cancel_when_destroyed(widget: QObject, flag: Callable[[], "CancelFlag | None"]) -> None:
    """Set the running job's cancel flag when ``widget`` is deleted (e.g. its viewer closes).

    Dock widgets get no close event when the viewer window closes; they are
    only deleted with it.  ``flag()`` runs after the Qt object is gone, so it
    must read plain Python attributes only.
    """

    def on_destroyed(*_: Any) -> None:
        current = flag()
        if current is not None:
            current.set()

    widget.destroyed.connect(on_destroyed)


def find_click_widget(viewer: "napari.viewer.Viewer"):
    """The click dock in ``viewer``'s window, or ``None`` (kept only until the heatmap and training docks use
    the workspace; no import of the click dock, so the modules do not import each other)."""
    window = getattr(viewer, "window", None)
    docks = getattr(window, "dock_widgets", None) if window is not None else None
    for widget in list(docks.values()) if docks else []:
        if type(widget).__name__ == "ClickWidget":
            return widget
    return None


def bind_keys(viewer: "napari.viewer.Viewer", actions: dict[str, Callable[[], None]]) -> dict[str, Callable]:
    """Bind each key to its action on ``viewer`` (overwriting); returns the bound functions."""
    funcs: dict[str, Callable] = {}
    for key, action in actions.items():
        def run(_viewer: Any, _action: Callable[[], None] = action) -> None:
            _action()
        funcs[key] = run
        viewer.bind_key(key, run, overwrite=True)
    return funcs


def unbind_keys(viewer: "napari.viewer.Viewer", funcs: dict[str, Callable]) -> None:
    """Unbind the keys of :func:`bind_keys`, unless something else re-bound them since."""
    bound = list(viewer.keymap.values())
    for key, func in funcs.items():
        if any(f is func for f in bound):
            viewer.bind_key(key, None)


def error_text(err: BaseException) -> str:
    """A one-line message for an exception (its own message, else its type)."""
    text = str(err).strip()
    return text if text else type(err).__name__


def prepare_torch_optimizers() -> None:
    """Import ``torch._dynamo`` safely, in the GUI thread, before a worker builds an optimizer.

    torch's optimizers import ``torch._dynamo`` on first use, which probes for
    ``triton``.  Under Mesa OpenGL (llvmpipe, radeonsi) napari's canvas has
    already loaded ``libLLVM``, and loading triton's own bundled LLVM then
    crashes the process (segmentation fault).  In exactly that case (Linux,
    ``libLLVM`` mapped, triton not yet imported) triton is marked unavailable
    for this process, so torch falls back to not using it; nothing in this
    plugin needs triton.
    """
    import sys

    if "triton" not in sys.modules and sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as fh:
                llvm_loaded = "libLLVM" in fh.read()
        except OSError:
            llvm_loaded = False
        if llvm_loaded:
            sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError
    import torch._dynamo  # noqa: F401


class ClickModelUser:
    """Mixin for docks that use the click widget's model unless given one.

    The host sets ``self.viewer`` and ``self._model = None``.
    """

    viewer: "napari.viewer.Viewer"
    _model: "RPSAM2 | None"

    def set_model(self, model: "RPSAM2") -> None:
        """Use this model instead of the click widget's."""
        self._model = model

    @property
    def model(self) -> "RPSAM2 | None":
        """The given model, else the click widget's, else ``None``."""
        if self._model is not None:
            return self._model
        click = find_click_widget(self.viewer)
        return None if click is None else click.model
