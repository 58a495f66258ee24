"""Background work for the docks: napari thread workers, progress from worker threads, error text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

from ..jobs import CancelFlag

__all__ = ["Bridge", "start_worker", "cancel_when_destroyed", "error_text"]


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


def error_text(err: BaseException) -> str:
    """A one-line message for an exception (its own message, else its type)."""
    text = str(err).strip()
    return text if text else type(err).__name__
