"""Model settings box: backbone size, SAM2 weights, shift-block checkpoint, device."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QToolButton,
    QWidget,
)

from ..model import RPSAM2
from ._workers import StatusLabel, error_text, start_worker

__all__ = ["ModelSettings", "BACKBONE_SIZES"]

BACKBONE_SIZES = {
    "tiny": "sam2.1_hiera_tiny",
    "small": "sam2.1_hiera_small",
    "base_plus": "sam2.1_hiera_base_plus",
    "large": "sam2.1_hiera_large",
}
HF_IDS = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base_plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}


def _path_row(edit: QLineEdit, pick) -> QWidget:
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit)
    browse = QToolButton()
    browse.setText("…")
    browse.setToolTip("Choose a file")
    browse.clicked.connect(pick)
    lay.addWidget(browse)
    return row


class ModelSettings(QGroupBox):
    """Choose and load an RP-SAM2 model in a worker thread.

    Emits :attr:`model_changed` with the new :class:`RPSAM2` once loaded.
    Loading errors (missing weights, wrong checkpoint) are shown in the box.
    """

    model_changed = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__("Model", parent)
        self.model: RPSAM2 | None = None
        self._worker = None
        form = QFormLayout(self)

        self.backbone = QComboBox()
        self.backbone.addItems(list(BACKBONE_SIZES))
        self.backbone.setToolTip("SAM2.1 Hiera backbone size: larger is slower and more accurate")
        self.backbone.currentTextChanged.connect(self._update_placeholder)
        form.addRow("Backbone", self.backbone)

        self.weights = QLineEdit()
        self.weights.setToolTip(
            "SAM2 weights: a Hugging Face model id (downloaded once, e.g. facebook/sam2.1-hiera-tiny)\n"
            "or a local .pt / .safetensors checkpoint. Empty = the official id for the chosen size.\n"
            "'random' builds random weights — for testing only, its masks are meaningless."
        )
        form.addRow("SAM2 weights", _path_row(self.weights, self._pick_weights))

        self.shift_block = QLineEdit()
        self.shift_block.setPlaceholderText("none: untrained block = plain SAM2")
        self.shift_block.setToolTip("Shift-block checkpoint (.safetensors) made by the training widget or `rpsam2 train`")
        form.addRow("Shift block", _path_row(self.shift_block, self._pick_shift_block))

        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.device.setToolTip("auto: CUDA GPU, then Apple MPS, then CPU")
        form.addRow("Device", self.device)

        self.load_button = QPushButton("Load model")
        self.load_button.clicked.connect(self.load)
        form.addRow(self.load_button)
        self.status = StatusLabel("No model loaded. Choose the weights and press Load model.")
        form.addRow(self.status)
        self._update_placeholder(self.backbone.currentText())

    # ------------------------------------------------------------ file pickers
    def _update_placeholder(self, size: str) -> None:
        self.weights.setPlaceholderText(f"{HF_IDS.get(size, '')} (Hugging Face) or a local file")

    def _pick_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM2 weights", "", "Checkpoints (*.pt *.pth *.safetensors);;All files (*)")
        if path:
            self.weights.setText(path)

    def _pick_shift_block(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Shift-block checkpoint", "", "Safetensors (*.safetensors);;All files (*)")
        if path:
            self.shift_block.setText(path)

    # ------------------------------------------------------------ loading
    def weights_text(self) -> str:
        """The SAM2 weights to use (the official HF id when the field is empty)."""
        return self.weights.text().strip() or HF_IDS[self.backbone.currentText()]

    def load(self) -> None:
        """Build the model from the fields in a worker thread."""
        if self._worker is not None:
            return
        backbone = BACKBONE_SIZES[self.backbone.currentText()]
        weights = self.weights_text()
        block = self.shift_block.text().strip() or None
        device = self.device.currentText()
        self.load_button.setEnabled(False)
        self.status.info(f"Loading {backbone} ({weights}) on {device}… the viewer stays usable.")
        self._worker = start_worker(
            RPSAM2.load, backbone, weights, block, device,
            on_return=self._loaded, on_error=self._failed, on_finish=self._done,
        )

    def _done(self) -> None:
        self._worker = None
        self.load_button.setEnabled(True)

    def _failed(self, err: BaseException) -> None:
        self.status.error(f"Could not load the model: {error_text(err)}")

    def _loaded(self, model: RPSAM2) -> None:
        self.set_model(model)

    def set_model(self, model: RPSAM2) -> None:
        """Use an existing model (e.g. one built by a script or a test)."""
        self.model = model
        note = "  ⚠ random weights: for testing only." if "random" in model.backbone.weights_signature else ""
        self.status.info(f"Loaded {model.backbone.name} on {model.device}{note}")
        self.status.setToolTip(model.summary())
        self.model_changed.emit(model)

    def refresh_summary(self) -> None:
        """Update the tooltip after the shift block changed."""
        if self.model is not None:
            self.status.setToolTip(self.model.summary())
