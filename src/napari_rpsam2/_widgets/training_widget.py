"""Shift-block training dock: a view over the viewer's workspace and :mod:`napari_rpsam2.app.train`.

It trains a fresh block on the workspace model's backbone, reusing the
embeddings and grid-Dice results the workspace already holds, and hands the
result over with ``workspace.use_shift_block``: the click dock, another
view of the same workspace, uses it from then on.  Label layers may be
Labels layers or label PNGs opened as RGB images (three equal channels).
Its "SAM2 adapters" section (:mod:`._adapter_section`) fine-tunes RFMedSAM 2's
adapters on the same image and labels instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, FileEdit, FloatSpinBox, SpinBox
from napari.layers import Image, Labels
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..app.train import label_array, train_from_arrays, would_replace
from ..jobs import CancelFlag, Cancelled
from ..training.data import DEFAULT_MERGE_GAP, DataError
from ._adapter_section import AdapterSection
from ._job_dock import JobDock
from ._layer_picker import LayerPicker
from ._plot import TrainingPlot
from ._slicing import full_resolution, layer_shape, slice_cache_key
from ._torch_import import import_torch_compiler
from ._views import StatusLabel, is_plugin_layer, scrolling_dock
from ._workers import error_text, start_worker

if TYPE_CHECKING:
    import napari

    from ..app.train import Trained

__all__ = ["TrainingWidget"]

STAGES = {"embeddings": "embedding slices", "candidates": "candidate grid clicks",
          "validation embeddings": "embedding validation slices", "validation": "validating", "epoch": "epochs"}


def _label_source(layer: Any) -> bool:
    """Labels layers, and label PNGs opened as RGB images; never the plugin's own layers."""
    if is_plugin_layer(layer):
        return False
    return isinstance(layer, Labels) or looks_like_label_png(layer)


def looks_like_label_png(layer: Any) -> bool:
    """An RGB image of whole numbers whose three channels agree (checked on a sparse sample)."""
    if not getattr(layer, "rgb", False) or getattr(layer, "multiscale", False):
        return False
    data = layer.data
    if not np.issubdtype(np.dtype(data.dtype), np.integer):
        return False
    sample = np.asarray(data[..., ::8, ::8, :3])
    return bool(np.array_equal(sample[..., 0], sample[..., 1]) and np.array_equal(sample[..., 0], sample[..., 2]))


def _training_job(model, candidates, image, labels, out, config, *, rgb, contrast_limits, gamma, val, slice_keys,
                  merge_gap, progress, on_epoch, cancel, overwrite=False) -> "Trained":
    """The worker's job: torch's optimizer stack is imported here, off the GUI thread."""
    import_torch_compiler()
    image, labels = np.asarray(image), np.asarray(labels)
    if val is not None:
        val = (np.asarray(val[0]), np.asarray(val[1]), val[2])
    return train_from_arrays(model, image, labels, out, config, rgb=rgb, contrast_limits=contrast_limits,
                             gamma=gamma, val=val, slice_keys=slice_keys, candidates=candidates, merge_gap=merge_gap,
                             progress=progress, on_epoch=on_epoch, cancel=cancel, overwrite=overwrite)


def _hyper_parameters() -> Container:
    f = FloatSpinBox
    return Container(widgets=[
        SpinBox(name="epochs", label="Epochs", value=1500, min=1, max=1_000_000,
                tooltip="Passes over the training slices (paper: 1500)"),
        f(name="lr", label="Learning rate", value=1e-4, min=1e-6, max=1.0, step=1e-6,
          tooltip="AdamW learning rate"),
        SpinBox(name="batch_size", label="Batch size", value=4, min=1, max=256, tooltip="Images per step"),
        SpinBox(name="clicks_per_object", label="Clicks per object", value=10, min=1, max=1000,
                tooltip="Random clicks per object per step"),
        f(name="alpha", label="α (Dice)", value=1.0, min=0.0, max=100.0, step=0.1, tooltip="Weight of the Dice loss"),
        f(name="beta", label="β (distance)", value=0.1, min=0.0, max=100.0, step=0.1,
          tooltip="Weight of the distance-to-candidates loss"),
        f(name="gamma", label="γ (outside)", value=1.0, min=0.0, max=100.0, step=0.1,
          tooltip="Weight of the stay-inside loss"),
        f(name="theta", label="θ", value=15.0, min=0.1, max=1000.0, tooltip="Sharpness of the distance loss"),
        f(name="epsilon", label="ε", value=0.005, min=0.0, max=1.0, step=0.0005,
          tooltip="Candidates: grid clicks within ε of the best Dice"),
        SpinBox(name="grid_stride", label="Grid stride (px)", value=0, min=0, max=512,
                tooltip="Candidate grid spacing in pixels; 0 = auto (about 12×12 points per object)"),
        SpinBox(name="eval_clicks", label="Validation clicks", value=10, min=1, max=100,
                tooltip="Validation: single clicks (seeds) per object"),
        FloatSpinBox(name="merge_gap", label="Merge gap (px)", value=DEFAULT_MERGE_GAP, min=0.0, max=200.0, step=1.0,
                     tooltip="Binary labels: regions closer than this many pixels are one object (the two prongs\n"
                             "of a forceps); 0 = every connected region is an object of its own"),
    ])


class TrainingWidget(JobDock):
    """Train the shift block on an annotated stack open in the viewer."""

    cancelling_text = "Stopping after the current step…"

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__(napari_viewer)
        self.trained: Trained | None = None
        self._bridge.message.connect(self._on_message)

        v = self.viewer
        self.image_picker = LayerPicker(v, (Image,))
        self.labels_picker = LayerPicker(v, (Labels, Image), exclude=lambda layer: not _label_source(layer))
        self.use_val = QCheckBox("Separate validation data")
        self.val_image_picker = LayerPicker(v, (Image,))
        self.val_labels_picker = LayerPicker(v, (Labels, Image), exclude=lambda layer: not _label_source(layer))
        self.use_val.setToolTip("Without it, 20 % of the annotated slices (at least one) are held out for validation")
        self.use_val.toggled.connect(self._val_toggled)
        self._val_toggled(False)
        self.form = _hyper_parameters()
        self.out = FileEdit(mode="w", filter="*.safetensors", label="Output file",
                            value=str(Path.home() / "rpsam2-shift-block.safetensors"),
                            tooltip="Best checkpoint; '<name>.last.safetensors' beside it lets you resume")
        self.params_button = QToolButton()
        self.params_button.setCheckable(True)
        self.params_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.params_button.toggled.connect(self._params_toggled)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("Stop after the current step; the best checkpoint so far is kept")
        self.use_button = QPushButton("Use the trained block")
        self.use_button.setToolTip("The click dock (and the heatmap) use the trained shift block from now on")
        self.use_button.setEnabled(False)
        self.progress = QProgressBar()
        self.plot = TrainingPlot()
        self.status = StatusLabel("Pick an annotated image and its labels, then press Start.")
        self.adapters = AdapterSection(self)  # fine-tunes SAM2's adapters on the same image and labels
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self.use_trained_block)
        scrolling_dock(self, self._panel())

    def _panel(self) -> QWidget:
        panel = QWidget()
        lay = QVBoxLayout(panel)
        data = QFormLayout()
        data.addRow("Image", self.image_picker)
        data.addRow("Labels", self.labels_picker)
        data.addRow(self.use_val)
        data.addRow("Val. image", self.val_image_picker)
        data.addRow("Val. labels", self.val_labels_picker)
        lay.addLayout(data)
        lay.addWidget(self.params_button)
        self.form.native.layout().setContentsMargins(12, 0, 0, 0)
        lay.addWidget(self.form.native)
        self._params_toggled(False)
        out = Container(widgets=[self.out])
        out.native.layout().setContentsMargins(0, 0, 0, 0)
        lay.addWidget(out.native)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        lay.addLayout(row)
        for w in (self.adapters, self.progress, self.plot, self.use_button, self.status):
            lay.addWidget(w)
        return panel

    def _params_toggled(self, on: bool) -> None:
        self.params_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.params_button.setText("Hyper-parameters (paper defaults)")
        self.form.native.setVisible(on)

    def _val_toggled(self, on: bool) -> None:
        self.val_image_picker.setEnabled(on)
        self.val_labels_picker.setEnabled(on)

    def config(self) -> Any:
        """A ``TrainConfig`` from the form."""
        from ..training import TrainConfig

        v = {w.name: w.value for w in self.form}
        return TrainConfig(epochs=v["epochs"], lr=v["lr"], batch_size=v["batch_size"],
                           clicks_per_object=v["clicks_per_object"], alpha=v["alpha"], beta=v["beta"],
                           gamma=v["gamma"], theta=v["theta"], epsilon=v["epsilon"],
                           grid_stride=v["grid_stride"] or None, eval_clicks=v["eval_clicks"])

    def cleanup(self) -> None:
        """Stop training and stop following the viewer's layers (the dock closed)."""
        self.cancel()
        for picker in (self.image_picker, self.labels_picker, self.val_image_picker, self.val_labels_picker):
            picker.disconnect_viewer()

    # ------------------------------------------------------------------ run
    def _buttons(self) -> None:
        self.start_button.setEnabled(not self.running)
        self.stop_button.setEnabled(self.running and not self._cancel())
        self.adapters.buttons(self.running)

    def _pair(self, image: Any, labels: Any, what: str) -> tuple[Any, Any, bool]:
        """Image data, label data and ``rgb``, checked cheaply (no copies)."""
        if image is None or labels is None:
            raise DataError(f"Pick the {what} image and its labels.")
        img, lab = full_resolution(image), full_resolution(labels)
        spatial = np.shape(img)[:-1] if image.rgb else np.shape(img)
        lab = label_array(lab, spatial, labels.name)
        if not np.any(lab):
            raise DataError(f"{what}: the labels '{labels.name}' are empty; paint at least one object.")
        return img, lab, bool(image.rgb)

    def start(self) -> None:
        """Start training in a worker (everything slow happens there)."""
        if self.running or (model := self._model_or_complain()) is None:
            return
        out = self.out.value
        if not str(out).strip() or str(out) == "." or not Path(out).expanduser().parent.is_dir():
            self.status.error(f"Choose an output file in an existing folder (got '{out}').")
            return
        out = Path(out).expanduser()
        if out.suffix != ".safetensors":
            out = out.with_name(out.name + ".safetensors")
        overwrite = would_replace(out)
        if overwrite and not self._may_replace(out):
            self.status.info(f"Not started: {out.name} was kept. Choose another output file to train.")
            return
        image = self.image_picker.layer()
        try:
            img, lab, rgb = self._pair(image, self.labels_picker.layer(), "training")
            val = (self._pair(self.val_image_picker.layer(), self.val_labels_picker.layer(), "validation")
                   if self.use_val.isChecked() else None)
        except DataError as err:
            self.status.error(str(err))
            return
        flag = self._begin_job()
        self.plot.clear()
        self.trained = None
        self.use_button.setEnabled(False)
        self.status.info("Training… the viewer stays usable.")
        emit = self._bridge.send
        keys = ([slice_cache_key(image, (i,)) for i in range(layer_shape(image)[0])] if image.ndim > 2
                else [slice_cache_key(image, ())])  # made here: the worker never touches the layer
        gap = float(self.form.merge_gap.value)
        start_worker(_training_job, model, self.workspace.candidates, img, lab, str(out), self.config(), rgb=rgb,
                     contrast_limits=list(image.contrast_limits), gamma=float(image.gamma), val=val,
                     slice_keys=keys.__getitem__, merge_gap=gap, overwrite=overwrite,
                     progress=lambda stage, done, total: emit(("progress", stage, done, total)),
                     on_epoch=lambda log: emit(("epoch", log)), cancel=flag,
                     on_return=self._trained, on_error=lambda err: self._failed(flag, err),
                     on_finish=lambda: self._end_job(flag))

    def _may_replace(self, out: Path) -> bool:
        """Ask before a run replaces the checkpoint of another one."""
        answer = QMessageBox.question(
            self, "Replace the checkpoint?",
            f"{out.name} already holds a shift block from another training run.\n"
            f"Replace it (and {out.stem}.last.safetensors) with this run's?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _on_message(self, msg: tuple) -> None:
        if msg[0] == "progress":
            _, stage, done, total = msg
            self._show_stage(STAGES.get(stage, stage), done, total)
        elif msg[0] == "epoch":
            self.plot.add(msg[1])

    def _failed(self, flag: CancelFlag, err: BaseException) -> None:
        if flag() and isinstance(err, Cancelled):  # a real error while stopping is still shown
            self.status.info("Stopped before the first epoch; no checkpoint was written.")
        else:
            self.status.error(f"Training failed: {error_text(err)}")

    def _trained(self, trained: "Trained") -> None:
        self.trained = trained
        r = trained.result
        what = "Stopped" if r.cancelled else "Finished"
        if r.checkpoint is None:
            self.status.info(f"{what} after {len(r.history)} epoch(s); no checkpoint was written.")
            return
        self.use_button.setEnabled(True)
        self.status.info(f"{what} after {len(r.history)} epoch(s); best epoch {r.best_epoch} saved to "
                         f"{r.checkpoint}. Validation: {trained.data.validation}.")

    def use_trained_block(self) -> None:
        """Make the workspace's model use the trained block (the click dock follows)."""
        if self.trained is None or self.trained.result.checkpoint is None:
            self.status.error("Nothing to use yet: train first.")
            return
        try:
            if self.workspace.model is None:
                self.workspace.set_model(self.trained.model)
            else:
                self.workspace.load_shift_block(self.trained.result.checkpoint)
        except (OSError, ValueError) as err:  # e.g. a model with another backbone was loaded meanwhile
            self.status.error(f"Could not use the trained block: {error_text(err)}")
            return
        self.status.info(f"The click dock and the heatmap now use {self.trained.result.checkpoint}.")
