"""Model settings box: backbone size, SAM2 weights, SAM2 adapters, shift-block checkpoint, device.

The model is loaded into the viewer's :class:`~napari_rpsam2.app.Workspace`, shared by every dock;
the box shows whatever model the workspace holds (also one loaded by another dock or a script).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QWidget,
)

from ..app import Workspace
from ..model import RPSAM2
from ._views import StatusLabel
from ._workers import error_text, start_worker

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
    """Choose an RP-SAM2 model and load it into ``workspace`` in a worker thread.

    Loading errors (missing weights, wrong checkpoint) are shown in the box.
    """

    def __init__(self, workspace: Workspace, parent=None) -> None:
        super().__init__("Model", parent)
        self.workspace = workspace
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
        hint = QLabel("Offline or just trying things out? Type <b>random</b>: every step works, "
                      "but the masks mean nothing.")
        hint.setWordWrap(True)
        form.addRow(hint)

        self.adapters = QLineEdit()
        self.adapters.setPlaceholderText("none: SAM2 as it is")
        self.adapters.setToolTip("SAM2 adapters (.safetensors) fine-tuned for this backbone by `rpsam2 finetune`:\n"
                                 "every dock then uses the fine-tuned SAM2.\n"
                                 "A file made for another backbone is refused.")
        form.addRow("Adapters", _path_row(self.adapters, self._pick_adapters))

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
        self.show_model()

    # ------------------------------------------------------------ file pickers
    def _update_placeholder(self, size: str) -> None:
        self.weights.setPlaceholderText(f"{HF_IDS.get(size, '')} (Hugging Face) or a local file")

    def _pick_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM2 weights", "", "Checkpoints (*.pt *.pth *.safetensors);;All files (*)")
        if path:
            self.weights.setText(path)

    def _pick_adapters(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM2 adapters", "", "Safetensors (*.safetensors);;All files (*)")
        if path:
            self.adapters.setText(path)

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
        adapters = self.adapters.text().strip() or None
        device = self.device.currentText()
        self.load_button.setEnabled(False)
        with_adapters = " with adapters" if adapters else ""
        self.status.info(f"Loading {backbone} ({weights}){with_adapters} on {device}… the viewer stays usable.")
        self._worker = start_worker(
            self.workspace.load_model, backbone, weights, block, device, adapters=adapters,
            on_return=self.workspace.set_model, on_error=self._failed, on_finish=self._done,
        )

    def _done(self) -> None:
        self._worker = None
        self.load_button.setEnabled(True)

    def _failed(self, err: BaseException) -> None:
        self.status.error(f"Could not load the model: {error_text(err)}")

    @property
    def model(self) -> RPSAM2 | None:
        """The workspace's model, or ``None``."""
        return self.workspace.model

    def show_model(self, model: Any = None) -> None:
        """Describe the workspace's model (called when it or its shift block changes)."""
        model = self.workspace.model
        if model is None:
            return
        note = "  ⚠ random weights: for trying things out only." if "random" in model.backbone.weights_signature else ""
        adapters = model.backbone.adapters
        fine_tuned = "" if adapters is None else f" with adapters ({adapters.parameter_count():,} parameters)"
        file = None if adapters is None else (getattr(model.backbone, "adapter_header", None) or {}).get("file")
        if file:  # adapters hooked on after loading (e.g. the training dock's Use the adapters)
            self.adapters.setText(str(file))
        self.status.info(f"Loaded {model.backbone.name}{fine_tuned} on {model.device}{note}")
        self.status.setToolTip(model.summary())
