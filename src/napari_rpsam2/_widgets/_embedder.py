"""Background embedding of a stack's other slices, with a progress bar and Cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget

from ..jobs import CancelFlag
from ._workers import Bridge, error_text, start_worker

if TYPE_CHECKING:
    from ..model import RPSAM2

__all__ = ["BackgroundEmbedder"]


class BackgroundEmbedder(QWidget):
    """Runs ``model.precompute`` in a worker; shows progress; Cancel stops it between slices."""

    def __init__(self, on_error=None, parent=None) -> None:
        super().__init__(parent)
        self._cancel: CancelFlag | None = None
        self._on_error = on_error
        self._bridge = Bridge()
        self._bridge.progress.connect(self._progress)
        self.progress = QProgressBar()
        self.progress.setFormat("embedding slices %v/%m")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop embedding the other slices (clicks still work, slice by slice)")
        self.cancel_button.clicked.connect(self.cancel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.progress)
        lay.addWidget(self.cancel_button)
        self.hide()

    @property
    def running(self) -> bool:
        """Whether a job is running."""
        return self._cancel is not None

    def start(self, model: "RPSAM2", stack: Any, *, rgb: bool, key: Any, order: list[int],
              contrast_limits: Any = None, gamma: float = 1.0) -> None:
        """Embed ``stack[i]`` for ``i`` in ``order`` (cached under ``(key, i)``), mapped as the layer shows it.

        Stops when the embeddings fill the cache's memory budget, so the first slice of ``order`` stays cached.
        """
        self.cancel()
        flag = self._cancel = CancelFlag()
        self.progress.setRange(0, len(order))
        self.progress.setValue(0)
        self.show()

        def progress(done: int, total: int) -> None:
            if not flag():
                self._bridge.send_progress(done, total)

        start_worker(model.precompute, stack, rgb=rgb, key=key, indices=order, progress=progress, cancel=flag,
                     contrast_limits=contrast_limits, gamma=gamma, within_budget=True,
                     on_error=self._failed, on_finish=lambda: self._done(flag))

    def _failed(self, err: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(f"Embedding the other slices failed: {error_text(err)}")

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _done(self, flag: CancelFlag) -> None:
        if flag is self._cancel:
            self._cancel = None
            self.hide()

    def cancel(self) -> None:
        """Stop the running job, if any (it ends after the slice being encoded)."""
        if self._cancel is not None:
            self._cancel.set()
            self._cancel = None
            self.hide()
