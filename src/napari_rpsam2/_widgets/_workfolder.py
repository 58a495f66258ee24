"""The click dock's work-folder row: "Save to work folder", where it is, and restoring it when an image opens.

For an image opened from a file (``layer.source.path``) every commit and
undo is written to ``<name>.rpsam2/`` next to the file (or a folder the
person picks) through :mod:`napari_rpsam2.app.workfolder`.  When the dock
meets an image whose work folder exists, the saved labels come back in a
Labels layer and every object's saved clicks and boxes in a Points layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..app import workfolder as wf
from ..io.label_volume import has_labels
from ._slicing import full_resolution, layer_shape
from ._views import METADATA_KEY

if TYPE_CHECKING:
    import napari

__all__ = ["WorkFolderPanel", "RESTORED_KEY", "SAVED_PROMPTS_ROLE", "class_names", "source_path"]

RESTORED_KEY = "napari_rpsam2_workfolder"
"""Metadata of a Labels layer restored from a work folder: the folder's path (the layer stays pickable)."""
SAVED_PROMPTS_ROLE = "saved prompts"
POSITIVE, NEGATIVE = (0.2, 0.9, 0.2, 1.0), (1.0, 0.25, 0.25, 1.0)


def source_path(layer: Any) -> Path | None:
    """The file (or folder) napari read ``layer`` from, or ``None``."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return Path(path) if path else None


def class_names(layer: Any) -> dict[int, str] | None:
    """``label id -> class name`` from a Labels layer's features (``index`` and ``class`` columns), if any."""
    features = getattr(layer, "features", None)
    if features is None or "index" not in features or "class" not in features:
        return None
    return {int(i): str(c) for i, c in zip(features["index"], features["class"]) if int(i) != 0}


class WorkFolderPanel(QWidget):
    """A checkbox, the folder's path and a button to choose another folder; records commits and undos."""

    def __init__(self, viewer: "napari.viewer.Viewer", report, target=lambda: None) -> None:
        super().__init__()
        self.viewer, self.report, self.target = viewer, report, target
        self.save_box = QCheckBox("Save to work folder")
        self.save_box.setToolTip("Every commit and undo is saved with its clicks, box and model to a folder next to\n"
                                 "the image; reopening the image restores the labels and prompts.")
        self.path_label = QLabel("Work folder: –")
        self.path_label.setWordWrap(True)
        self.choose_button = QPushButton("Choose folder…")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write the saved labels (labels.tif), the prompts CSV of 'rpsam2 propagate'\n"
                                      "(prompts.csv) and COCO JSON with RLE masks (coco.json) into a folder")
        self.image: Any = None
        self.location: Path | None = None
        self._folder: wf.WorkFolder | None = None
        self._chosen: dict[Any, Path] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.save_box)
        row.addWidget(self.choose_button)
        row.addWidget(self.export_button)
        lay.addLayout(row)
        lay.addWidget(self.path_label)
        self.choose_button.clicked.connect(self._choose)
        self.export_button.clicked.connect(self._export)

    # ------------------------------------------------------------------ where
    def attach(self, image: Any) -> Any:
        """Follow ``image``: find its work folder, restore it if it holds objects; returns a restored Labels layer."""
        self.image, self._folder = image, None
        source = source_path(image)
        chosen = self._chosen.get(image.unique_id)
        self.location = chosen or (wf.default_location(source) if source is not None else None)
        self.save_box.setChecked(self.location is not None)
        self.save_box.setEnabled(self.location is not None)
        self.path_label.setText(f"Work folder: {self.location}" if self.location is not None else
                                "Work folder: – (the image was not opened from a file; choose a folder to save)")
        if self.location is None or not (self.location / wf.WorkFolder.META).exists():
            return None
        return self._restore(source)

    def set_location(self, folder: str | Path) -> Any:
        """Save into ``folder`` (the work folder itself) from now on; restores it when it holds objects."""
        if self.image is None:
            return None
        self._chosen[self.image.unique_id] = Path(folder)
        return self.attach(self.image)

    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the work folder")
        if folder and self.image is not None:
            self.set_location(Path(folder) / f"{self.image.name}{wf.SUFFIX}")

    def folder(self) -> wf.WorkFolder | None:
        """The work folder to write to (made on the first write), or ``None`` when saving is off or failed."""
        if not self.save_box.isChecked() or self.location is None or self.image is None:
            return None
        if self._folder is None:
            try:
                self._folder = wf.open_for_image(full_resolution(self.image), layer_shape(self.image),
                                                 image_path=source_path(self.image), folder=self.location)
            except (wf.WorkFolderError, OSError) as err:
                self.save_box.setChecked(False)
                self.report(f"Not saving to the work folder: {err}")
                return None
        return self._folder

    def _export(self) -> None:
        out = QFileDialog.getExistingDirectory(self, "Folder for the exported files")
        if out:
            self.export_to(out)

    def export_to(self, out: str | Path, labels_layer: Any = None) -> bool:
        """Write ``labels.tif``, ``prompts.csv`` and ``coco.json`` of the work folder into the folder ``out``.

        Class names come from ``labels_layer.features`` (columns ``index`` and ``class``) when it has them.
        """
        folder = self._folder
        if folder is None and self.location is not None and (self.location / wf.WorkFolder.META).exists():
            folder = self.folder()
        if folder is None:
            self.report("Nothing to export: commit an object first (with Save to work folder on).")
            return False
        out = Path(out)
        try:
            summary = wf.export(folder, labels=out / "labels.tif", prompts=out / "prompts.csv",
                                coco=out / "coco.json",
                                class_names=class_names(labels_layer if labels_layer is not None else self.target()))
        except (OSError, ValueError) as err:
            self.report(f"Export failed: {err}")
            return False
        self.report(f"Exported {summary['objects']} object(s) to {out} (labels.tif, prompts.csv, coco.json).",
                    level="info")
        return True

    # ------------------------------------------------------------------ restore
    def _restore(self, source: Path | None) -> Any:
        for layer in self.viewer.layers:  # already restored in this viewer
            if layer.metadata.get(RESTORED_KEY) == str(self.location):
                return layer
        try:
            self._folder = wf.open_for_image(full_resolution(self.image), layer_shape(self.image),
                                             image_path=source, folder=self.location, create=False)
            restored = wf.restore(self._folder)
        except (wf.WorkFolderError, OSError) as err:
            self.save_box.setChecked(False)
            self.report(f"Work folder not restored: {err}")
            return None
        if not restored.objects and not has_labels(restored.labels):
            return None
        image = self.image
        labels = self.viewer.add_labels(restored.labels, name=f"{image.name} objects", scale=image.scale,
                                        translate=image.translate, metadata={RESTORED_KEY: str(self.location)})
        self._add_prompts(restored)
        skipped = f"; {restored.skipped} damaged journal line(s) skipped" if restored.skipped else ""
        self.report(f"Restored {len(restored.objects)} object(s) and their prompts from {self.location}{skipped}.",
                    level="info")
        return labels

    def _add_prompts(self, restored: wf.Restored) -> None:
        rows, objects, positive = [], [], []
        for oid, events in sorted(restored.objects.items()):
            for event in events:
                for prompt in event.get("prompts", ()):
                    if int(prompt.get("object", -1)) != oid:
                        continue
                    for (r, c), lab in zip(prompt.get("clicks") or [], prompt.get("labels") or []):
                        rows.append([*prompt["slice"], r, c])
                        objects.append(oid)
                        positive.append(bool(lab))
        image = self.image
        nd = len(layer_shape(image))
        data = np.array(rows, float).reshape(-1, nd)
        self.viewer.add_points(data, ndim=nd, name=f"{image.name} saved prompts", scale=image.scale,
                               translate=image.translate, size=max(6.0, 0.035 * min(layer_shape(image)[-2:])),
                               features={"object": np.array(objects, int), "positive": np.array(positive, bool)},
                               face_color=[POSITIVE if p else NEGATIVE for p in positive] or "white",
                               metadata={METADATA_KEY: {"role": SAVED_PROMPTS_ROLE, "image": image.unique_id,
                                                        "folder": str(self.location)}})

    # ------------------------------------------------------------------ record
    def committed(self, record: Any, preview: Any, box: Any, target: Any, model: Any) -> None:
        """Save one commit (its slice, clicks, refined clicks, box, model) to the work folder."""
        folder = self.folder()
        if folder is None or record is None or preview is None or model is None:
            return
        image = self.image
        if RESTORED_KEY not in target.metadata:  # a reopened dock finds this layer instead of restoring again
            target.metadata[RESTORED_KEY] = str(self.location)
        try:
            wf.record_commit(folder, record.label_id, record.change, preview.result, target.data, model=model,
                             refine=preview.refine, box=box, contrast_limits=image.contrast_limits,
                             gamma=image.gamma, rgb=bool(image.rgb))
        except (OSError, ValueError) as err:
            self.report(f"The commit is in the layer but was not saved to the work folder: {err}")

    def undone(self, record: Any, target: Any) -> None:
        """Save the undo of a commit."""
        folder = self.folder()
        if folder is None or record is None:
            return
        try:
            wf.undo_object(folder, "commit", record.label_id, target.data, record.change.slice_indices)
        except (OSError, ValueError) as err:
            self.report(f"The undo was not saved to the work folder: {err}")
