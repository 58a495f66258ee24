"""The dock that runs one long job at a time in a napari thread worker.

Heatmap, training, propagation and one-shot docks share this: the viewer's
workspace (one model, one embedding cache), the running job's
:class:`~napari_rpsam2.jobs.CancelFlag` (``None`` when idle; one job at a
time), the "no model" message, a progress bar reset for each job, and Cancel.
A job's callbacks take its flag, so a cancelled job's result can be dropped
(``flag()`` is true).  A job started by the dock is cancelled when the dock is
deleted with its viewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..jobs import CancelFlag
from ._views import NO_MODEL, DockView
from ._workers import Bridge, cancel_when_destroyed
from ._workspace import unwrap, workspace_for

if TYPE_CHECKING:
    import napari

__all__ = ["JobDock"]


class JobDock(DockView):
    """A dock view over the viewer's workspace that runs one job at a time.

    Subclasses make ``self.progress`` (a ``QProgressBar``) and ``self.status``
    (a :class:`~napari_rpsam2._widgets._views.StatusLabel`) and override
    :meth:`_buttons` to enable their buttons for :attr:`running`.
    """

    cancelling_text = "Cancelling…"
    """What the status line says between Cancel and the job's end."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)  # layers made here must be the ones the pickers list
        self.workspace = workspace_for(napari_viewer)
        self._cancel: CancelFlag | None = None
        self._bridge = Bridge()  # messages from the worker thread to the GUI thread
        cancel_when_destroyed(self, lambda: self._cancel)  # the viewer closed while the job runs

    @property
    def running(self) -> bool:
        """Whether a job of this dock is under way."""
        return self._cancel is not None

    def _model_or_complain(self) -> Any:
        """The viewer's model, or ``None`` after saying in the status line how to load one."""
        model = self.workspace.model
        if model is None:
            self.status.error(NO_MODEL)
        return model

    def _begin_job(self) -> CancelFlag:
        """A new current job: its cancel flag, the progress bar at 0, the buttons of a running dock."""
        flag = self._cancel = CancelFlag()
        self.workspace.running_jobs.add(flag)  # e.g. adapters are not swapped under a running job
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._buttons()
        return flag

    def cancel(self) -> None:
        """Ask the current job to stop at its next check; it writes nothing."""
        if self._cancel is not None:
            self._cancel.set()
            self.status.info(self.cancelling_text)
            self._buttons()

    def _end_job(self, flag: CancelFlag) -> bool:
        """A worker ended; ``True`` when it was the current job (the dock is idle again)."""
        current = flag is self._cancel
        self.workspace.running_jobs.discard(flag)
        if current:
            self._cancel = None
        self._buttons()
        return current

    def _show_stage(self, label: str, done: int, total: int) -> None:
        """Progress ``done / total`` of a stage, shown as "<label> 3/10"."""
        self.progress.setFormat(f"{label} %v/%m")
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _buttons(self) -> None:
        """Enable the dock's buttons for :attr:`running` (override)."""

    def _report(self, text: str, level: str = "error") -> None:
        """Say ``text`` in the status line (``level``: "info" or "error")."""
        (self.status.error if level == "error" else self.status.info)(text)
