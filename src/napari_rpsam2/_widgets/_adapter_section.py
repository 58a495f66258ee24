"""The training dock's "SAM2 adapters" section: fine-tune RFMedSAM 2's adapters on the dock's image and labels.

A view over :func:`napari_rpsam2.app.finetune.finetune_from_arrays`.  It runs
as the dock's job (its progress bar, plot, Stop button and status line): the
adapters train on a private copy of SAM2, the file is written only when every
epoch ran, and "Use the adapters" loads it on the viewer's model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import Container, FileEdit, FloatSpinBox, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHBoxLayout, QPushButton, QToolButton, QVBoxLayout, QWidget

from ..jobs import Cancelled
from ..training.data import DataError
from ._torch_import import import_torch_compiler
from ._workers import error_text, start_worker

__all__ = ["AdapterSection"]


def _finetune_job(*args: Any, **kwargs: Any) -> Any:
    """The worker's job: torch's optimizer stack is imported here, off the GUI thread."""
    from ..app.finetune import finetune_from_arrays

    import_torch_compiler()
    return finetune_from_arrays(*args, **kwargs)


class AdapterSection(QWidget):
    """Settings, output file and buttons for adapter fine-tuning (folded until opened)."""

    def __init__(self, dock: Any) -> None:
        """``dock``: the training dock whose pickers, progress bar, plot, Stop and status it uses."""
        super().__init__()
        self.dock = dock
        self.outcome: Any = None
        self.toggle = QToolButton()
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setText("SAM2 adapters (RFMedSAM 2)")
        self.toggle.toggled.connect(self._toggled)
        self.form = Container(widgets=[
            SpinBox(name="epochs", label="Epochs", value=20, min=1, max=100_000, tooltip="Passes over the slices"),
            FloatSpinBox(name="lr", label="Learning rate", value=1e-3, min=1e-6, max=1.0, step=1e-4,
                         tooltip="AdamW learning rate of the adapters (SAM2 stays frozen)"),
            SpinBox(name="clicks", label="Clicks per object", value=1, min=0, max=50,
                    tooltip="Positive clicks drawn inside each object, besides its jittered box"),
            SpinBox(name="rank", label="Adapter width", value=16, min=1, max=256,
                    tooltip="Hidden channels of each adapter (new adapters only; loaded ones keep theirs)"),
        ])
        self.out = FileEdit(mode="w", filter="*.safetensors", label="Adapter file",
                            value=str(Path.home() / "rpsam2-adapters.safetensors"))
        self.start_button = QPushButton("Fine-tune adapters")
        self.start_button.setToolTip("Fine-tune SAM2's adapters on the image and labels above (boxes and clicks "
                                     "from the labels); SAM2's own weights stay frozen")
        self.use_button = QPushButton("Use the adapters")
        self.use_button.setToolTip("Every dock's SAM2 uses the fine-tuned adapters from now on")
        self.use_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.use_button.clicked.connect(self.use)
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(12, 0, 0, 0)
        out = Container(widgets=[self.out])
        for c in (self.form, out):
            c.native.layout().setContentsMargins(0, 0, 0, 0)
            body.addWidget(c.native)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.use_button)
        body.addLayout(row)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.toggle)
        lay.addWidget(self.body)
        self._toggled(False)

    def _toggled(self, on: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(on)

    def buttons(self, running: bool) -> None:
        """Enable the buttons of an idle dock."""
        self.start_button.setEnabled(not running)
        self.use_button.setEnabled(not running and self.outcome is not None)

    def start(self) -> None:
        """Fine-tune in a worker on the dock's image and labels; the dock's Stop cancels it."""
        from ..model.adapters import AdapterConfig
        from ..training.adapters import FinetuneConfig

        dock = self.dock
        if dock.running or (model := dock._model_or_complain()) is None:
            return
        out = Path(str(self.out.value)).expanduser()
        if not out.name or str(self.out.value) == "." or not out.parent.is_dir():
            dock.status.error(f"Choose an adapter file in an existing folder (got '{self.out.value}').")
            return
        if out.suffix != ".safetensors":
            out = out.with_name(out.name + ".safetensors")
        image = dock.image_picker.layer()
        try:
            img, lab, rgb = dock._pair(image, dock.labels_picker.layer(), "training")
        except DataError as err:
            dock.status.error(str(err))
            return
        f = {w.name: w.value for w in self.form}
        flag = dock._begin_job()
        dock.plot.clear()
        self.outcome = None
        dock.status.info("Fine-tuning SAM2's adapters… the viewer stays usable.")
        emit = dock._bridge.send
        start_worker(_finetune_job, model, img, lab, str(out), rgb=rgb, contrast_limits=list(image.contrast_limits),
                     gamma=float(image.gamma), merge_gap=float(dock.form.merge_gap.value),
                     config=FinetuneConfig(epochs=int(f["epochs"]), lr=float(f["lr"]), clicks=int(f["clicks"])),
                     adapter_config=AdapterConfig(rank=int(f["rank"])),
                     progress=lambda stage, done, total: emit(("progress", stage, done, total)),
                     on_epoch=lambda log: emit(("epoch", log)), cancel=flag,
                     on_return=lambda outcome: None if flag() else self._done(outcome),
                     on_error=lambda err: self._failed(flag, err), on_finish=lambda: dock._end_job(flag))

    def _failed(self, flag: Any, err: BaseException) -> None:
        if flag() or isinstance(err, Cancelled):
            self.dock.status.info("Stopped: no adapter file was written and SAM2 is unchanged.")
        else:
            self.dock.status.error(f"Fine-tuning failed: {error_text(err)}")

    def _done(self, outcome: Any) -> None:
        self.outcome = outcome
        h = outcome.history
        losses = f" (loss {h[0].loss:.3f} → {h[-1].loss:.3f})" if h else ""
        self.dock.status.info(f"Adapters saved to {outcome.path} after {len(h)} epoch(s){losses}. "
                              "Press Use the adapters to segment with them.")
        self.buttons(self.dock.running)

    def use(self) -> None:
        """Load the fine-tuned adapters on the viewer's model (every dock uses them)."""
        model = self.dock.workspace.model
        if self.outcome is None or model is None:
            self.dock.status.error("Nothing to use yet: fine-tune adapters first (with a model loaded).")
            return
        try:
            self.dock.workspace.load_adapters(self.outcome.path)  # every dock hears of the new model
        except (OSError, ValueError) as err:
            self.dock.status.error(f"Could not use the adapters: {error_text(err)}")
            return
        self.dock.status.info(f"Every dock's SAM2 now uses the adapters in {self.outcome.path}.")
