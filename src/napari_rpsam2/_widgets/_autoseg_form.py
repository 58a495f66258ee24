"""The form parts of the "Automatic segmentation" dock: the class table and the generator settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..io.label_volume import label_ids as stored_label_ids

__all__ = ["ClassTable", "generator_settings", "segment_settings", "plot_log", "save_generator_file",
           "load_generator_file", "SLICE_CHOICES", "STAGE_CHOICES"]

SLICE_CHOICES = [("Slice on screen", "current"), ("Range of slices", "range"), ("Whole stack", "all")]
STAGE_CHOICES = [("Generator only (no SAM2)", 0), ("Stage 1 (box + generator mask)", 1),
                 ("Stages 1 + 2 (RFMedSAM 2)", 2)]


class ClassTable(QTableWidget):
    """Label id → class name, editable; empty means "each label id is its own class"."""

    def __init__(self) -> None:
        super().__init__(0, 2)
        self.setHorizontalHeaderLabels(["Label id", "Class name"])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setVisible(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setMinimumHeight(90)
        self.setMaximumHeight(130)
        self.setToolTip("Name the class of each label id (ids may share a class: instance labels);\n"
                        "leave it empty to make every label id a class of its own")

    def fill(self, ids: list[int]) -> None:
        """One row per label id, keeping the names already typed for ids still there."""
        names = self.names()
        self.setRowCount(0)
        for i in ids:
            row = self.rowCount()
            self.insertRow(row)
            item = QTableWidgetItem(str(i))
            item.setFlags(item.flags() & ~item.flags().ItemIsEditable)
            self.setItem(row, 0, item)
            self.setItem(row, 1, QTableWidgetItem(names.get(i, f"class {i}")))

    def names(self) -> dict[int, str]:
        """The table as ``{label id: class name}`` (rows without a name are left out)."""
        out = {}
        for row in range(self.rowCount()):
            ident, name = self.item(row, 0), self.item(row, 1)
            if ident is not None and name is not None and name.text().strip():
                out[int(ident.text())] = name.text().strip()
        return out


def label_ids(data: Any) -> list[int]:
    """The non-zero ids of a label array (a chunked one is read a stored chunk at a time)."""
    return [int(v) for v in stored_label_ids(data)]


def generator_settings() -> Container:
    """Training settings of the prompt generator (the engine's defaults)."""
    return Container(widgets=[
        SpinBox(name="epochs", label="Epochs", value=60, min=1, max=100_000,
                tooltip="Passes over the annotated slices; the best epoch by validation Dice is kept"),
        ComboBox(name="input_size", label="Input size (px)", choices=[64, 128, 256, 512], value=128,
                 tooltip="Slices are resized to this square for the U-Net"),
        SpinBox(name="context", label="Context slices", value=0, min=0, max=8,
                tooltip="Neighbouring slices on each side given to the U-Net as extra channels (volumes)"),
        FloatSpinBox(name="lr", label="Learning rate", value=2e-3, min=1e-6, max=1.0, step=1e-4,
                     tooltip="AdamW learning rate"),
        FloatSpinBox(name="val_fraction", label="Validation share", value=0.2, min=0.0, max=0.9, step=0.05,
                     tooltip="Share of the annotated slices held out to pick the best epoch (0: the last)"),
    ])


def segment_settings() -> Container:
    """Which slices to segment and how many SAM2 stages refine the boxes."""
    return Container(widgets=[
        ComboBox(name="slices", label="Slices", choices=SLICE_CHOICES, value="current"),
        SpinBox(name="first", label="From slice", value=0, min=0, max=1_000_000),
        SpinBox(name="last", label="To slice", value=0, min=0, max=1_000_000),
        SpinBox(name="min_area", label="Smallest region (px)", value=16, min=1, max=1_000_000,
                tooltip="Regions of the generator smaller than this get no box"),
        ComboBox(name="stages", label="Refinement", choices=STAGE_CHOICES, value=2,
                 tooltip="Generator only: its own region inside each box; stage 1: SAM2 from each box and the "
                         "generator's mask;\nstage 2: again from the box and logits of stage 1"),
        CheckBox(name="follow", text="Follow through the stack (SAM2 memory)", value=False,
                 tooltip="Stacks: each reviewed box is refined on its slice, then followed through the whole\n"
                         "stack with SAM2's memory (one id per object on every slice); needs a model"),
    ])


def plot_log(log: Any) -> SimpleNamespace:
    """A generator epoch as the training plot draws it (validation Dice in %)."""
    val = None if log.val_dice != log.val_dice else 100.0 * log.val_dice
    return SimpleNamespace(epoch=log.epoch, loss=log.loss, val_mdsc=val)


def save_generator_file(generator: Any, text: str) -> Path:
    """Write ``generator`` to the path typed in the file field (``.safetensors`` added); ``ValueError`` says why not."""
    from ..autoseg import save_generator

    path = Path(text).expanduser()
    if generator is None:
        raise ValueError("No generator to save yet: train or load one first.")
    if not path.name or text.strip() in ("", ".") or not path.parent.is_dir():
        raise ValueError(f"Choose a generator file in an existing folder (got '{text}').")
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    try:
        return save_generator(path, generator, training=generator.header.get("training"),
                              metrics=generator.header.get("metrics"))
    except OSError as err:
        raise ValueError(f"Could not save the generator: {err}") from None


def load_generator_file(text: str) -> Any:
    """The generator in the file typed in the field; ``ValueError`` saying what is wrong with it."""
    from ..autoseg import load_generator
    from ..model.checkpoint import CheckpointError

    try:
        return load_generator(Path(text).expanduser())
    except (CheckpointError, OSError) as err:
        raise ValueError(f"Could not load the generator: {err}") from None
