"""The work folder of each image, as every dock of a viewer sees it, and the click dock's row for it.

For an image opened from a file (``layer.source.path``) every commit, propagation,
one-shot run and re-run is written to ``<name>.rpsam2/`` next to the file (or a
folder the person picks) through :mod:`napari_rpsam2.app.workfolder`, and so is
each undo and redo of it, whether from a dock's Undo or Ctrl-Z / Ctrl-Shift-Z on
the layer (through the callbacks of its step in the layer's history).
One :class:`ImageWorkFolder` per image (kept in the viewer's workspace) holds
where the folder is, whether saving is on and which Labels layer it keeps;
the click dock's :class:`WorkFolderPanel` shows it, and every dock calls
:func:`save_run`.  When the click dock meets an image whose work folder exists,
the saved labels come back in a Labels layer (each object's source and method
on its features), the saved clicks in a Points layer and the saved boxes in a
Shapes layer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..app import workfolder as wf
from ..io.label_volume import has_labels
from ._objects_layer import RESTORED_KEY, objects_metadata
from ._slicing import full_resolution, layer_shape
from ._views import METADATA_KEY
from ._workspace import workspace_for

if TYPE_CHECKING:
    import napari

__all__ = ["WorkFolderPanel", "ImageWorkFolder", "image_folder", "save_run", "save_undo_and_redo", "RESTORED_KEY",
           "SAVED_PROMPTS_ROLE", "SAVED_BOXES_ROLE", "class_names", "source_path"]

SAVED_PROMPTS_ROLE = "saved prompts"
SAVED_BOXES_ROLE = "saved boxes"
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


class ImageWorkFolder:
    """One image's work folder for all docks of a viewer: where, whether saving is on, the folder once open.

    The folder keeps one Labels layer of the image (tagged ``metadata[RESTORED_KEY]``):
    the restored one, or the first one a dock wrote into while saving.
    """

    def __init__(self, location: Path | None) -> None:
        self.location = location
        self.saving = location is not None
        self.folder: wf.WorkFolder | None = None

    def open(self, image: Any) -> wf.WorkFolder:
        """The folder (made on the first write); raises WorkFolderError or OSError."""
        if self.folder is None:
            self.folder = wf.open_for_image(full_resolution(image), layer_shape(image),
                                            image_path=source_path(image), folder=self.location)
        return self.folder

    def refusal(self, viewer: Any, target: Any) -> str | None:
        """Why a write into ``target`` is not saved, or ``None`` (:func:`save_run` then tags it as the kept layer).

        Refused: a write into another Labels layer than the one the folder
        keeps, and the first write of a viewer that has not restored the
        objects already in the folder (its planes would drop them).
        """
        kept = [ly for ly in viewer.layers if ly.metadata.get(RESTORED_KEY) == str(self.location)]
        if any(ly is target for ly in kept):
            return None
        if kept:
            return f"it keeps '{kept[0].name}' (write into that layer to save)"
        if self.folder is None and (self.location / wf.WorkFolder.META).exists():
            try:
                earlier = bool(wf.WorkFolder.open(self.location).live_events()[0])
            except wf.WorkFolderError as err:
                return str(err)
            if earlier:
                return ("it holds objects not restored in this viewer; open the click dock on this image to "
                        "restore them, then write into the restored layer")
        return None


def image_folder(viewer: Any, image: Any) -> ImageWorkFolder:
    """The work-folder state of ``image`` in ``viewer`` (next to its file by default; none if not from a file)."""
    folders = workspace_for(viewer).work_folders
    state = folders.get(image.unique_id)
    if state is None:
        source = source_path(image)
        state = folders[image.unique_id] = ImageWorkFolder(None if source is None else wf.default_location(source))
    return state


def save_run(viewer: Any, image: Any, target: Any, change: Any, record: Callable[[wf.WorkFolder, Any], dict],
             step: Any = None, report: Callable[..., None] | None = None) -> str:
    """Record one write of a dock with ``record(folder, labels)``; returns a sentence for the dock's status.

    Nothing is recorded when saving is off, or when the folder keeps another
    Labels layer of the image (the sentence says which).  ``step`` is the
    write's step in the layer's history: its undos and redos, from any dock's
    Undo or Ctrl-Z / Ctrl-Shift-Z on the layer, are recorded too
    (:func:`save_undo_and_redo`; ``report(text, level=...)`` hears of a failure).
    """
    state = image_folder(viewer, image)
    if not state.saving or state.location is None:
        return ""
    refused = state.refusal(viewer, target)
    if refused is not None:
        return f" Not saved to the work folder: {refused}."
    try:
        folder = state.open(image)
        target.metadata[RESTORED_KEY] = str(state.location)  # the folder keeps this layer from now on
        event = record(folder, full_resolution(target))
    except (wf.WorkFolderError, OSError, ValueError) as err:
        return f" Not saved to the work folder: {err}"

    def active() -> bool:  # saving still on, into this folder
        return state.saving and state.folder is not None and state.folder.path == folder.path

    save_undo_and_redo(step, folder, event, target, change.slice_indices, report or _ignore, active=active)
    return f" Saved to {state.location.name}."


def save_undo_and_redo(step: Any, folder: wf.WorkFolder, event: dict, target: Any, slices: Any, report,
                       active: Callable[[], bool] = lambda: True) -> None:
    """Record in ``folder`` every undo of the history ``step`` that wrote ``event``, and every redo of it.

    An undo is an ``undo`` event of ``event``; a redo is an ``undo`` of that
    undo, which puts ``event`` back in effect.  ``slices`` are the slices the
    step changed (saved as they are after each undo or redo).  For any dock
    that saves its writes: a commit, a propagation, a one-shot run or re-run.
    Nothing is recorded while ``active()`` is false (saving turned off).
    """
    if step is None or event is None:
        return
    report, slices, undone = _Report(report), [tuple(s) for s in slices], []

    def save(seq: int, what: str) -> dict | None:
        if not active():
            return None
        try:
            return wf.record_undo(folder, seq, full_resolution(target), slices)
        except (OSError, ValueError) as err:
            report(f"The {what} was not saved to the work folder: {err}")
            return None

    def on_undo(_step: Any) -> None:
        undone.append(save(int(event["seq"]), "undo"))

    def on_redo(_step: Any) -> None:
        last = undone.pop() if undone else None
        if last is not None:
            save(int(last["seq"]), "redo")

    step.on_undo.append(on_undo)
    step.on_redo.append(on_redo)


def _ignore(*_: Any, **__: Any) -> None:
    pass


class _Report:
    """A dock's report function that stays harmless once the dock is gone."""

    def __init__(self, report) -> None:
        self._report = report

    def __call__(self, text: str, level: str = "error") -> None:
        try:
            self._report(text, level=level)
        except RuntimeError:  # the dock's widgets were deleted
            pass


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
        self.export_button.setToolTip("Write the saved labels (labels.tif, and labels.nii.gz for a volume or labels/\n"
                                      "PNGs for a video), the prompts CSV of 'rpsam2 propagate' (prompts.csv) and\n"
                                      "COCO JSON with RLE masks (coco.json) into a folder")
        self.image: Any = None
        self.state: ImageWorkFolder | None = None
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
        self.save_box.toggled.connect(self._on_save_box)

    @property
    def location(self) -> Path | None:
        """Where the image's work folder is (``None``: not from a file and no folder chosen)."""
        return None if self.state is None else self.state.location

    @property
    def _folder(self) -> wf.WorkFolder | None:
        return None if self.state is None else self.state.folder

    def _on_save_box(self, checked: bool) -> None:
        if self.state is not None:
            self.state.saving = bool(checked)

    # ------------------------------------------------------------------ where
    def attach(self, image: Any) -> Any:
        """Follow ``image``: find its work folder, restore it if it holds objects; returns a restored Labels layer."""
        self.image, self.state = image, None
        source = source_path(image)
        state = image_folder(self.viewer, image)
        self.save_box.setChecked(state.saving)
        self.state = state
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
        state = image_folder(self.viewer, self.image)
        state.location, state.folder, state.saving = Path(folder), None, True
        return self.attach(self.image)

    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the work folder")
        if folder and self.image is not None:
            self.set_location(Path(folder) / f"{self.image.name}{wf.SUFFIX}")

    def folder(self) -> wf.WorkFolder | None:
        """The work folder to write to (made on the first write), or ``None`` when saving is off or failed."""
        state = self.state
        if state is None or not state.saving or state.location is None:
            return None
        try:
            return state.open(self.image)
        except (wf.WorkFolderError, OSError) as err:
            self.save_box.setChecked(False)
            self.report(f"Not saving to the work folder: {err}")
            return None

    def _export(self) -> None:
        out = QFileDialog.getExistingDirectory(self, "Folder for the exported files")
        if out:
            self.export_to(out)

    def export_to(self, out: str | Path, labels_layer: Any = None) -> bool:
        """Write ``labels.tif``, ``prompts.csv`` and ``coco.json`` of the work folder into the folder ``out``.

        The labels also go out in the image's own form when that is not a TIFF
        stack: ``labels.nii.gz`` (a volume, with its affine) or ``labels/``
        (per-frame PNGs named after the frames of a video or frame folder).

        Class names come from ``labels_layer.features`` (columns ``index`` and ``class``) when it has them.
        """
        folder = self._folder
        if folder is None and self.location is not None and (self.location / wf.WorkFolder.META).exists():
            folder = self.folder()
        if folder is None:
            self.report("Nothing to export: commit an object first (with Save to work folder on).")
            return False
        out = Path(out)
        source = wf.open_source(folder)
        in_form = wf.input_form_name(source)  # labels.nii.gz of a volume, labels/ PNGs of a video or frames
        try:
            summary = wf.export(folder, labels=[out / "labels.tif", *([out / in_form] if in_form else [])],
                                prompts=out / "prompts.csv", coco=out / "coco.json", source=source,
                                class_names=class_names(labels_layer if labels_layer is not None else self.target()))
        except (OSError, ValueError) as err:
            self.report(f"Export failed: {err}")
            return False
        names = ", ".join(["labels.tif", *([in_form] if in_form else []), "prompts.csv", "coco.json"])
        self.report(f"Exported {summary['objects']} object(s) to {out} ({names}).", level="info")
        return True

    # ------------------------------------------------------------------ restore
    def _restore(self, source: Path | None) -> Any:
        for layer in self.viewer.layers:  # already restored in this viewer
            if layer.metadata.get(RESTORED_KEY) == str(self.location):
                return layer
        try:
            self.state.folder = wf.open_for_image(full_resolution(self.image), layer_shape(self.image),
                                                  image_path=source, folder=self.location, create=False)
            restored = wf.restore(self.state.folder)
        except (wf.WorkFolderError, OSError) as err:
            self.save_box.setChecked(False)
            self.report(f"Work folder not restored: {err}")
            return None
        if not restored.objects and not has_labels(restored.labels):
            return None
        image = self.image
        labels = self.viewer.add_labels(restored.labels, name=f"{image.name} objects", scale=image.scale,
                                        translate=image.translate,
                                        metadata={RESTORED_KEY: str(self.location), **objects_metadata(image)},
                                        features=_object_table(restored))
        self._add_prompts(restored)
        skipped = f"; {restored.skipped} damaged journal line(s) skipped" if restored.skipped else ""
        self.report(f"Restored {len(restored.objects)} object(s) and their prompts from {self.location}{skipped}.",
                    level="info")
        return labels

    def _add_prompts(self, restored: wf.Restored) -> None:
        rows, objects, positive, boxes, box_objects = [], [], [], [], []
        for oid, prompt in _object_prompts(restored):
            for (r, c), lab in zip(prompt.get("clicks") or [], prompt.get("labels") or []):
                rows.append([*prompt["slice"], r, c])
                objects.append(oid)
                positive.append(bool(lab))
            if prompt.get("box") is not None:
                top, left, bottom, right = prompt["box"]
                lead = list(prompt["slice"])
                boxes.append(np.array([lead + [top, left], lead + [top, right], lead + [bottom, right],
                                       lead + [bottom, left]], float))
                box_objects.append(oid)
        image = self.image
        nd = len(layer_shape(image))
        meta = {"image": image.unique_id, "folder": str(self.location)}
        data = np.array(rows, float).reshape(-1, nd)
        self.viewer.add_points(data, ndim=nd, name=f"{image.name} saved prompts", scale=image.scale,
                               translate=image.translate, size=max(6.0, 0.035 * min(layer_shape(image)[-2:])),
                               features={"object": np.array(objects, int), "positive": np.array(positive, bool)},
                               face_color=[POSITIVE if p else NEGATIVE for p in positive] or "white",
                               metadata={METADATA_KEY: {"role": SAVED_PROMPTS_ROLE, **meta}})
        if boxes:
            self.viewer.add_shapes(boxes, ndim=nd, shape_type="rectangle", name=f"{image.name} saved boxes",
                                   scale=image.scale, translate=image.translate, edge_color="yellow",
                                   face_color="transparent", features={"object": np.array(box_objects, int)},
                                   metadata={METADATA_KEY: {"role": SAVED_BOXES_ROLE, **meta}})

    # ------------------------------------------------------------------ record
    def committed(self, record: Any, preview: Any, box: Any, target: Any, model: Any, step: Any = None) -> None:
        """Save one commit (its slice, clicks, refined clicks, box, model) to the work folder.

        ``step`` is the commit's step in the layer's history: its undos and
        redos (a dock's Undo or Ctrl-Z / Ctrl-Shift-Z on the layer) are saved too.
        """
        if record is None or preview is None or model is None or self.state is None or self.folder() is None:
            return
        image = self.image

        def write(folder: wf.WorkFolder, labels: Any) -> dict:
            return wf.record_commit(folder, record.label_id, record.change, preview.result, labels, model=model,
                                    refine=preview.refine, box=box, contrast_limits=image.contrast_limits,
                                    gamma=image.gamma, rgb=bool(image.rgb))

        note = save_run(self.viewer, image, target, record.change, write, step=step, report=self.report)
        if note.startswith(" Not saved"):
            self.report(f"The commit is in the layer. {note.strip()}")


def _object_prompts(restored: wf.Restored):
    """``(object id, prompt)`` of every saved prompt of every object still in effect."""
    for oid, events in sorted(restored.objects.items()):
        for event in events:
            for prompt in event.get("prompts", ()):
                if int(prompt.get("object", -1)) == oid:
                    yield oid, prompt


def _object_table(restored: wf.Restored) -> dict:
    """Features of the restored Labels layer: per object, what made it, with which method, from which slices."""
    index, made_by, method, slices, names = [0], ["background"], [""], [""], ["background"]
    for oid, events in sorted(restored.objects.items()):
        index.append(oid)
        made_by.append(" + ".join(e["kind"] for e in events))
        method.append(" + ".join(e["method"] if e["kind"].startswith("oneshot") else
                                 e.get("model", {}).get("method", "") for e in events))
        where = sorted({tuple(p["slice"]) for e in events for p in e.get("prompts", ())
                        if int(p.get("object", -1)) == oid})
        slices.append(", ".join(":".join(str(v) for v in w) for w in where))
        names.append(next((e["classes"][str(oid)] for e in reversed(events) if str(oid) in e.get("classes", {})),
                          ""))
    table = {"index": index, "made_by": made_by, "method": method, "prompt_slices": slices}
    if any(names[1:]):  # an automatic run named the objects' classes
        table["class"] = names
    return table
