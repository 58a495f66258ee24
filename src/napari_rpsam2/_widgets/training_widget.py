"""Shift-block training dock widget: annotated stacks in the viewer → a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ._plot import TrainingPlot
from ._workers import (Bridge, CancelFlag, ClickModelUser, LayerPicker, StatusLabel, cancel_when_destroyed, error_text,
                       find_click_widget, prepare_torch_optimizers, start_worker)

if TYPE_CHECKING:
    import napari

    from ..model import RPSAM2
    from ..training import TrainResult

__all__ = ["TrainingWidget", "run_training"]

CLICK_WIDGET = "Click segmentation (RP-SAM2)"
STAGES = {"embeddings": "embedding slices", "candidates": "candidate points", "epoch": "epochs"}


def run_training(base: "RPSAM2", image: np.ndarray, labels: np.ndarray, rgb: bool, out: str, config: Any,
                 val_pair: tuple[np.ndarray, np.ndarray, bool] | None, progress, on_epoch, cancel
                 ) -> tuple["TrainResult", "RPSAM2"]:
    """Build the data, train a fresh shift block on ``base``'s frozen backbone (Qt-free).

    The trained model shares the backbone and embedding cache of ``base`` but
    has its own shift block, so the click widget keeps working meanwhile.
    """
    import torch

    from ..model import RPSAM2, ShiftBlock, ShiftBlockConfig
    from ..training import split_by_slice, stack_from_arrays, train_shift_block

    data = stack_from_arrays(image, labels, rgb=rgb)
    if val_pair is not None:
        train, val = data, stack_from_arrays(val_pair[0], val_pair[1], rgb=val_pair[2])
    elif len(data) >= 2:
        train, val = split_by_slice(data)
    else:
        train, val = data, None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        block = ShiftBlock(ShiftBlockConfig())
    model = RPSAM2(base.backbone, block, cache=base.cache)
    result = train_shift_block(model, train, out, config, val=val, progress=progress, on_epoch=on_epoch,
                               cancel=cancel)
    return result, model


def _spin(value: float, lo: float, hi: float, decimals: int = 0, step: float = 1.0, tip: str = "") -> Any:
    box = QSpinBox() if decimals == 0 else QDoubleSpinBox()
    if decimals:
        box.setDecimals(decimals)
        box.setSingleStep(step)
    box.setRange(lo, hi)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class TrainingWidget(ClickModelUser, QWidget):
    """Train the shift block on an annotated stack open in the viewer."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._model: RPSAM2 | None = None
        self._cancel: CancelFlag | None = None
        self.trained_model: RPSAM2 | None = None
        self.result: TrainResult | None = None
        self._bridge = Bridge()
        self._bridge.message.connect(self._on_message)

        self.image_picker = LayerPicker(napari_viewer, (Image,))
        self.labels_picker = LayerPicker(napari_viewer, (Labels,))
        self.use_val = QCheckBox("Separate validation data (else a split by slice)")
        self.val_image_picker = LayerPicker(napari_viewer, (Image,))
        self.val_labels_picker = LayerPicker(napari_viewer, (Labels,))
        self.use_val.toggled.connect(self._val_toggled)
        self._val_toggled(False)

        self.epochs = _spin(1500, 1, 1_000_000, tip="Passes over the training slices (paper: 1500)")
        self.lr = _spin(1e-4, 1e-7, 1.0, decimals=6, step=1e-5, tip="AdamW learning rate")
        self.batch = _spin(4, 1, 256, tip="Images per step")
        self.clicks = _spin(10, 1, 1000, tip="Random clicks per object per step")
        self.alpha = _spin(1.0, 0.0, 100.0, decimals=3, step=0.1, tip="Weight α of the Dice loss")
        self.beta = _spin(0.1, 0.0, 100.0, decimals=3, step=0.1, tip="Weight β of the distance-to-candidates loss")
        self.gamma = _spin(1.0, 0.0, 100.0, decimals=3, step=0.1, tip="Weight γ of the stay-inside loss")
        self.theta = _spin(15.0, 0.1, 1000.0, decimals=2, tip="Sharpness θ of the distance loss")
        self.epsilon = _spin(0.005, 0.0, 1.0, decimals=4, step=0.001, tip="Candidates: Dice within ε of the best")
        self.stride = _spin(0, 0, 512, tip="Candidate grid spacing in pixels (auto: about 12×12 per object)")
        self.stride.setSpecialValueText("auto")
        self.eval_clicks = _spin(10, 1, 100, tip="Validation: single clicks (seeds) per object")
        self.out = QLineEdit(str(Path.home() / "rpsam2-shift-block.safetensors"))
        self.out.setToolTip("Best checkpoint; '<name>.last.safetensors' beside it lets you resume")

        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("Stop after the current step; the best checkpoint so far is kept")
        self.load_button = QPushButton("Use trained shift block in the click widget")
        self.load_button.setEnabled(False)
        self.progress = QProgressBar()
        self.plot = TrainingPlot()
        self.status = StatusLabel("Pick an annotated image + labels and press Start. Uses the click widget's model.")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.load_button.clicked.connect(self.load_into_click_widget)
        self._layout()
        cancel_when_destroyed(self, lambda: self._cancel)  # the viewer closed while training runs

    def _layout(self) -> None:
        lay = QVBoxLayout(self)
        data = QFormLayout()
        data.addRow("Image", self.image_picker)
        data.addRow("Labels", self.labels_picker)
        data.addRow(self.use_val)
        data.addRow("Validation image", self.val_image_picker)
        data.addRow("Validation labels", self.val_labels_picker)
        lay.addLayout(data)
        box = QGroupBox("Hyper-parameters (paper defaults)")
        form = QFormLayout(box)
        for name, w in (("Epochs", self.epochs), ("Learning rate", self.lr), ("Batch size", self.batch),
                        ("Clicks per object", self.clicks), ("α (Dice)", self.alpha), ("β (distance)", self.beta),
                        ("γ (outside)", self.gamma), ("θ", self.theta), ("ε", self.epsilon),
                        ("Grid stride", self.stride), ("Validation clicks", self.eval_clicks)):
            form.addRow(name, w)
        lay.addWidget(box)
        row = QHBoxLayout()
        row.addWidget(self.out)
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._pick_out)
        row.addWidget(browse)
        out = QFormLayout()
        out.addRow("Output file", row)
        lay.addLayout(out)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.plot)
        lay.addWidget(self.load_button)
        lay.addWidget(self.status)

    def _val_toggled(self, on: bool) -> None:
        self.val_image_picker.setEnabled(on)
        self.val_labels_picker.setEnabled(on)

    def _pick_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Shift-block checkpoint", self.out.text(), "Safetensors (*.safetensors)")
        if path:
            self.out.setText(path if path.endswith(".safetensors") else path + ".safetensors")

    def config(self) -> Any:
        """A ``TrainConfig`` from the fields."""
        from ..training import TrainConfig

        return TrainConfig(epochs=self.epochs.value(), lr=self.lr.value(), batch_size=self.batch.value(),
                           clicks_per_object=self.clicks.value(), alpha=self.alpha.value(), beta=self.beta.value(),
                           gamma=self.gamma.value(), theta=self.theta.value(), epsilon=self.epsilon.value(),
                           grid_stride=self.stride.value() or None, eval_clicks=self.eval_clicks.value())

    # ------------------------------------------------------------------ run
    @property
    def running(self) -> bool:
        """Whether training is running."""
        return self._cancel is not None

    def _pair(self, image: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray, bool]:
        if image is None or labels is None:
            raise ValueError(f"Pick the {what} image and its Labels layer.")
        img = np.asarray(image.data[0] if image.multiscale else image.data)
        lab = np.asarray(labels.data[0] if labels.multiscale else labels.data)
        spatial = img.shape[:-1] if image.rgb else img.shape
        if spatial != lab.shape:
            raise ValueError(f"{what}: image '{image.name}' is {spatial} but labels '{labels.name}' are {lab.shape}; "
                             "they must have the same slices and size.")
        if not lab.any():
            raise ValueError(f"{what}: the labels '{labels.name}' are empty; paint at least one object.")
        return img, lab, bool(image.rgb)

    def start(self) -> None:
        """Start training in a worker."""
        if self.running:
            return
        model = self.model
        if model is None:
            self.status.error(f"No model: open '{CLICK_WIDGET}' (Plugins ▸ RP-SAM2) and load a model there.")
            return
        out = Path(self.out.text().strip()).expanduser()
        if not self.out.text().strip() or not out.parent.is_dir():
            self.status.error(f"Choose an output file in an existing folder (got '{self.out.text()}').")
            return
        try:
            img, lab, rgb = self._pair(self.image_picker.layer(), self.labels_picker.layer(), "training")
            val = (self._pair(self.val_image_picker.layer(), self.val_labels_picker.layer(), "validation")
                   if self.use_val.isChecked() else None)
        except ValueError as err:
            self.status.error(str(err))
            return
        prepare_torch_optimizers()

        flag = self._cancel = CancelFlag()
        self.plot.clear()
        self.result = None
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.load_button.setEnabled(False)
        self.status.info("Training… the viewer stays usable.")
        emit = self._bridge.send
        start_worker(run_training, model, img, lab, rgb, str(out), self.config(), val,
                     progress=lambda stage, done, total: emit(("progress", stage, done, total)),
                     on_epoch=lambda log: emit(("epoch", log)), cancel=flag,
                     on_return=self._trained, on_error=self._failed, on_finish=lambda: self._finished(flag))

    def stop(self) -> None:
        """Ask the run to stop; it ends after the current step."""
        if self._cancel is not None:
            self._cancel.set()
            self.stop_button.setEnabled(False)
            self.status.info("Stopping after the current step…")

    def _on_message(self, msg: tuple) -> None:
        if msg[0] == "progress":
            _, stage, done, total = msg
            self.progress.setFormat(f"{STAGES.get(stage, stage)} %v/%m")
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(done)
        elif msg[0] == "epoch":
            self.plot.add(msg[1])

    def _failed(self, err: BaseException) -> None:
        self.status.error(f"Training failed: {error_text(err)}")

    def _finished(self, flag: CancelFlag) -> None:
        if flag is self._cancel:
            self._cancel = None
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def _trained(self, value: tuple["TrainResult", "RPSAM2"]) -> None:
        self.result, self.trained_model = value
        r = self.result
        done = len(r.history)
        what = "Stopped" if r.cancelled else "Finished"
        if r.checkpoint is None:
            self.status.info(f"{what} after {done} epoch(s); no checkpoint was written.")
            return
        self.load_button.setEnabled(True)
        self.status.info(f"{what} after {done} epoch(s); best epoch {r.best_epoch} saved to {r.checkpoint}.")

    def load_into_click_widget(self) -> None:
        """Load the best checkpoint into the click widget (opening it if needed)."""
        if self.result is None or self.result.checkpoint is None:
            self.status.error("Nothing to load: train first.")
            return
        click = find_click_widget(self.viewer)
        if click is None:
            _, click = self.viewer.window.add_plugin_dock_widget("napari-rpsam2", CLICK_WIDGET)
        if click.model is None and self.trained_model is not None:
            click.set_model(self.trained_model)
            ok = True
        else:
            ok = click.load_shift_block(str(self.result.checkpoint))
        if ok:
            self.status.info(f"The click widget now uses {self.result.checkpoint}.")
        else:
            self.status.error(f"The click widget could not load it: {click.status.text()}")
