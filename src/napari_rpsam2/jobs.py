"""The long-job contract shared by the engine, the application layer and both front ends.

Every long function takes two optional keyword arguments:

``progress(stage, done, total)``
    Called after each unit of work.  ``stage`` is a short lower-case word
    (``"embeddings"``, ``"candidates"``, ``"epoch"``, ``"frames"`` …) so one
    progress bar can say what is going on.
``cancel()``
    Returns ``True`` once the user asked to stop.  The job checks it between
    units of work and raises :class:`Cancelled`; nothing half-done is written.

:class:`CancelFlag` is a thread-safe ``cancel`` callable; :func:`check` raises
:class:`Cancelled` when it is set.  This module imports nothing of the
package, so every layer may use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["Cancelled", "CancelFlag", "Progress", "Cancel", "check", "stage_progress", "report"]


class Cancelled(RuntimeError):
    """A long job stopped because its ``cancel()`` callable turned true."""


class Progress(Protocol):
    """``progress(stage, done, total)``."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


Cancel = Callable[[], bool]


class CancelFlag:
    """A thread-safe cancel flag: pass it as ``cancel=flag``; ``flag.set()`` asks the job to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Ask the running job to stop at its next check."""
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


def check(cancel: Cancel | None, what: str = "the job") -> None:
    """Raise :class:`Cancelled` when ``cancel()`` is true."""
    if cancel is not None and cancel():
        raise Cancelled(f"{what} was cancelled")


def report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    """Call ``progress(stage, done, total)`` when a callback was given."""
    if progress is not None:
        progress(stage, done, total)


def stage_progress(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    """Adapt a ``progress(stage, done, total)`` callback to a two-argument ``(done, total)`` one."""
    if progress is None:
        return None

    def two_args(done: int, total: int) -> None:
        progress(stage, done, total)

    return two_args
