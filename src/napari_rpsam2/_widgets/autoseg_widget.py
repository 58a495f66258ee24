""""Automatic segmentation": a view over :mod:`napari_rpsam2.app.autoseg_review` (RFMedSAM 2 in the viewer).

Train the prompt generator on an annotated stack open in the viewer (live
loss / validation Dice plot, Cancel), save or load it, let it propose one box
per region on the slice on screen, a range or the whole stack (a Shapes layer
a person reviews with napari's own tools), then refine only the reviewed
boxes with SAM2 (stage 1 or 1 + 2).  Objects go into the target Labels layer
where it is empty (by default the image's objects layer, as in the other docks),
their classes into a class-map layer.  A run is one step of each layer's undo
history, tied together: Undo, or Ctrl-Z on either layer, reverts the whole run.
A run into the layer the image's work folder keeps is saved there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, FileEdit
from napari.layers import Image, Labels
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..app.autoseg import class_table
from ..app.autoseg_review import (
    follow_boxes,
    propose_boxes,
    refine_boxes,
    slice_choice,
    train_generator_on_arrays,
    write_followed,
    write_objects,
)
from ..app.label_changes import LabelChange
from ..app.label_history import undo_together
from ..io.label_volume import dense_limit_bytes, held_in_memory, new_label_volume
from ..jobs import CancelFlag, Cancelled
from ..training.data import DataError
from . import _autoseg_boxes as boxes_ui
from ._autoseg_form import (
    ClassTable,
    generator_settings,
    label_ids,
    load_generator_file,
    plot_log,
    save_generator_file,
    segment_settings,
)
from ._job_dock import JobDock
from ._label_history import UndoControl, history_for
from ._layer_picker import LayerPicker
from ._objects_layer import DefaultTarget, objects_metadata
from ._plot import TrainingPlot
from ._slicing import SliceError, image_slice, layer_shape, slice_cache_key
from ._torch_import import import_torch_compiler
from ._views import StatusLabel, scrolling_dock
from ._workers import error_text, start_worker
from ._workfolder_runs import autoseg_saved
from ._workspace import unwrap

if TYPE_CHECKING:
    import napari

__all__ = ["AutosegWidget"]

STAGES = {"slices": "slices", "epoch": "epochs"}


def _train_job(*args: Any, **kwargs: Any) -> Any:
    """The worker's job: torch's optimizer stack is imported here, off the GUI thread."""
    import_torch_compiler()
    return train_generator_on_arrays(*args, **kwargs)


class AutosegWidget(JobDock):
    """Train a prompt generator, review its boxes, refine them with SAM2."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__(napari_viewer)
        self.generator: Any = None
        self._written: Any = None  # the Labels layer the last run wrote into
        self._generator_file: str | None = None  # where the generator was loaded from or saved to
        self._class_layers: dict[str, Any] = {}
        self._watched: tuple = ()  # the layers the running job reads or writes
        self._stop_reason = ""
        self._bridge.message.connect(self._on_message)
        v = self.viewer
        self.image_picker = LayerPicker(v, (Image,))
        self.labels_picker = LayerPicker(v, (Labels,))
        self.classes = ClassTable()
        self.classes_button = QPushButton("Classes from the labels")
        self.classes_button.setToolTip("List the label ids of the picked labels in the table, to name them")
        self.train_form = generator_settings()
        self.train_button = QPushButton("Train generator")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.plot = TrainingPlot()
        self.file = FileEdit(mode="w", filter="*.safetensors", label="Generator file",
                             value=str(Path.home() / "rpsam2-generator.safetensors"))
        self.save_button = QPushButton("Save generator")
        self.load_button = QPushButton("Load generator")
        self.generator_label = QLabel("Generator: none yet (train or load one)")
        self.generator_label.setWordWrap(True)
        self.segment_picker = LayerPicker(v, (Image,))
        self.segment_form = segment_settings()
        self.target_picker = LayerPicker(v, (Labels,), allow_none="(new Labels layer)")
        self.propose_button = QPushButton("Propose boxes")
        self.propose_button.setToolTip("The generator's regions as boxes on a Shapes layer: move, resize, delete "
                                       "or add boxes there, then press Segment boxes")
        self.refine_button = QPushButton("Segment boxes")
        self.refine_button.setToolTip("Segment each box on the boxes layer (SAM2, or the generator alone); "
                                       "objects are written only where the target is empty")
        self.undo_button = QPushButton("Undo")
        self.default_target = DefaultTarget(v, self.target_picker, self.segment_picker.layer)
        self.segment_picker.currentIndexChanged.connect(self.default_target.update)
        self.status = StatusLabel("Pick an annotated image and its labels, then press Train generator "
                                  "(or load a generator).")
        for button, slot in ((self.classes_button, self.fill_classes), (self.train_button, self.train),
                             (self.cancel_button, self.cancel), (self.save_button, self.save_generator),
                             (self.load_button, self.load_generator), (self.propose_button, self.propose),
                             (self.refine_button, self.refine), (self.undo_button, self.undo)):
            button.clicked.connect(slot)
        self.segment_form.slices.changed.connect(self._slices_changed)
        self.segment_picker.currentIndexChanged.connect(self._slices_changed)
        self.viewer.layers.events.removed.connect(self._layer_removed)
        self.undo_control = UndoControl(v, self.undo_button, self._undo_layer,
                                        lambda level, text: getattr(self.status, level)(text),
                                        enabled=lambda: not self.running)
        self.target_picker.currentIndexChanged.connect(self.undo_control.update)
        scrolling_dock(self, self._panel())
        self._slices_changed()
        self._buttons()

    def _panel(self) -> QWidget:
        panel = QWidget()
        lay = QVBoxLayout(panel)
        data = QFormLayout()
        data.addRow("Image", self.image_picker)
        data.addRow("Labels", self.labels_picker)
        lay.addLayout(data)
        lay.addWidget(self.classes)
        lay.addWidget(self.classes_button)
        for form in (self.train_form, self.segment_form):
            form.native.layout().setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.train_form.native)
        row = QHBoxLayout()
        row.addWidget(self.train_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.plot)
        file = Container(widgets=[self.file])
        file.native.layout().setContentsMargins(0, 0, 0, 0)
        lay.addWidget(file.native)
        row = QHBoxLayout()
        row.addWidget(self.save_button)
        row.addWidget(self.load_button)
        lay.addLayout(row)
        lay.addWidget(self.generator_label)
        seg = QFormLayout()
        seg.addRow("Segment", self.segment_picker)
        lay.addLayout(seg)
        lay.addWidget(self.segment_form.native)
        out = QFormLayout()
        out.addRow("Write into", self.target_picker)
        lay.addLayout(out)
        lay.addWidget(self.propose_button)
        row = QHBoxLayout()
        row.addWidget(self.refine_button)
        row.addWidget(self.undo_button)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addStretch(1)
        return panel

    def _slices_changed(self, *_: Any) -> None:
        ranged = self.segment_form.slices.value == "range"
        self.segment_form.first.visible = ranged
        self.segment_form.last.visible = ranged
        image = self.segment_picker.layer()
        self.segment_form.follow.visible = image is not None and len(layer_shape(image)) == 3

    def _buttons(self) -> None:
        idle, has = not self.running, self.generator is not None
        self.train_button.setEnabled(idle)
        self.cancel_button.setEnabled(self.running and not self._cancel())
        for b in (self.load_button, self.classes_button):
            b.setEnabled(idle)
        for b in (self.save_button, self.propose_button, self.refine_button):
            b.setEnabled(idle and has)
        if hasattr(self, "undo_control"):
            self.undo_control.update()

    def cleanup(self) -> None:
        """Stop a running job and stop following the viewer (the dock closed)."""
        self.cancel()
        for picker in (self.image_picker, self.labels_picker, self.segment_picker, self.target_picker):
            picker.disconnect_viewer()
        self.default_target.disconnect()
        self.undo_control.disconnect()
        self.viewer.layers.events.removed.disconnect(self._layer_removed)

    def _layer_removed(self, event: Any) -> None:
        """A layer the running job reads or writes was deleted: stop the job at once (nothing is written)."""
        if self.running and any(event.value is layer for layer in self._watched):
            self._stop_reason = f"'{event.value.name}' was deleted: the run stopped and nothing was written."
            self._cancel.set()
            self.status.error(self._stop_reason)
            self._buttons()

    def _on_message(self, msg: tuple) -> None:
        if msg[0] == "progress":
            _, stage, done, total = msg
            self._show_stage(STAGES.get(stage, stage), done, total)
        elif msg[0] == "epoch":
            self.plot.add(plot_log(msg[1]))

    def _job(self, func: Any, *args: Any, done: Any, what: str, layers: tuple = (), **kwargs: Any) -> None:
        """Run ``func`` in a worker with progress and Cancel; ``done(result)`` only if it was not cancelled.

        Deleting one of ``layers`` while it runs cancels it.
        """
        flag = self._begin_job()
        self._watched, self._stop_reason = tuple(layers), ""
        emit = self._bridge.send
        start_worker(func, *args, progress=lambda stage, d, total: None if flag() else emit(("progress", stage, d,
                                                                                                  total)),
                     cancel=flag, on_return=lambda result: None if flag() else done(result),
                     on_error=lambda err: self._failed(flag, err, what),
                     on_finish=lambda: self._end_job(flag), **kwargs)

    def _failed(self, flag: CancelFlag, err: BaseException, what: str) -> None:
        if flag() and self._stop_reason:
            self.status.error(self._stop_reason)
        elif flag() or isinstance(err, Cancelled):
            self.status.info(f"Cancelled: {what} stopped; nothing was written.")
        else:
            self.status.error(f"{what.capitalize()} failed: {error_text(err)}")

    # ------------------------------------------------------------------ generator
    def fill_classes(self) -> None:
        """One table row per label id of the picked labels."""
        labels = self.labels_picker.layer()
        if labels is None:
            self.status.error("Pick the Labels layer whose ids you want to name.")
            return
        ids = label_ids(labels.data)
        if not ids:
            self.status.error(f"'{labels.name}' has no labels yet: paint some objects first.")
            return
        self.classes.fill(ids)
        self.status.info(f"{len(ids)} label id(s) listed: type a class name for each (ids may share one).")

    def train(self) -> None:
        """Train a generator on the picked image and labels, in a worker."""
        if self.running:
            return
        from ..autoseg import GeneratorConfig, GeneratorTrainConfig

        image, labels = self.image_picker.layer(), self.labels_picker.layer()
        if image is None or labels is None:
            self.status.error("Pick the annotated image and its Labels layer.")
            return
        shape = layer_shape(image)
        if layer_shape(labels) != shape:
            self.status.error(f"'{labels.name}' is {layer_shape(labels)} but '{image.name}' is {shape}; "
                              "pick the labels made for this image.")
            return
        names = self.classes.names() or None
        try:
            class_table(label_ids(labels.data), names)  # every id named: said now, not after the data is read
        except DataError as err:
            self.status.error(f"{err}.")
            return
        f = {w.name: w.value for w in self.train_form}
        self.plot.clear()
        self.status.info("Training the prompt generator… the viewer stays usable.")
        config = GeneratorConfig(context=int(f["context"]), input_size=int(f["input_size"]))
        train_config = GeneratorTrainConfig(epochs=int(f["epochs"]), lr=float(f["lr"]),
                                            val_fraction=float(f["val_fraction"]))
        emit = self._bridge.send
        self._job(_train_job, image.data, labels.data, rgb=bool(image.rgb), class_names=names,
                  config=config, train_config=train_config, on_epoch=lambda log: emit(("epoch", log)),
                  done=self._trained, what="training", layers=(image, labels))

    def _trained(self, result: Any) -> None:
        self._use_generator(result.generator)
        self._generator_file = None
        val = "no validation split" if result.best_val_dice != result.best_val_dice else \
            f"validation Dice {100 * result.best_val_dice:.1f} %"
        self.status.info(f"Trained: best epoch {result.best_epoch} ({val}). Save the generator to keep it, "
                         "or press Propose boxes.")

    def _use_generator(self, generator: Any) -> None:
        self.generator = generator
        self.generator_label.setText(f"Generator: classes {', '.join(generator.classes)}; "
                                     f"{generator.config.input_size}² input, {generator.config.context} context.")
        self._buttons()

    def save_generator(self) -> None:
        """Write the generator to the file field (atomically)."""
        try:
            path = save_generator_file(self.generator, str(self.file.value))
        except (OSError, ValueError) as err:
            self.status.error(error_text(err))
            return
        self._generator_file = str(path)
        self.status.info(f"Generator saved to {path}.")

    def load_generator(self) -> None:
        """Read a generator file (safetensors; nothing is unpickled)."""
        try:
            generator = load_generator_file(str(self.file.value))
        except (OSError, ValueError) as err:
            self.status.error(error_text(err))
            return
        self._use_generator(generator)
        self._generator_file = str(Path(str(self.file.value)).expanduser())
        self.status.info(f"Generator loaded from {self.file.value}. Press Propose boxes.")

    # ------------------------------------------------------------------ boxes
    def _slices(self, image: Any) -> list[int]:
        shape = layer_shape(image)
        if len(shape) == 2:
            return [0]
        f = self.segment_form
        current = image_slice(self.viewer, image).index[0] if f.slices.value == "current" else 0
        return slice_choice(f.slices.value, current, int(f.first.value), int(f.last.value), shape[0])

    def _segment_image(self) -> Any:
        image = self.segment_picker.layer()
        if image is None or len(layer_shape(image)) not in (2, 3) or image.multiscale:
            raise SliceError("Pick an image (2D or a 3D stack) to segment.")
        self.generator.check_stack(np.zeros((1, 2, 2, 3) if image.rgb else (1, 2, 2)), bool(image.rgb))
        return image

    def propose(self) -> None:
        """Run the generator on the chosen slices and show its boxes for review."""
        if self.running or self.generator is None:
            return
        try:
            image = self._segment_image()
            slices = self._slices(image)
        except (SliceError, ValueError) as err:
            self.status.error(str(err))
            return
        key = slice_cache_key(image, (0,))[0]
        self.status.info(f"Proposing boxes on {len(slices)} slice(s)…")
        self._job(propose_boxes, self.generator, image.data, slices, rgb=bool(image.rgb),
                  min_area=int(self.segment_form.min_area.value),
                  done=lambda boxes: self._proposed(image, key, slices, boxes), what="box proposal",
                  layers=(image,))

    def _proposed(self, image: Any, key: Any, slices: list[int], boxes: list) -> None:
        if image not in self.viewer.layers or slice_cache_key(image, (0,))[0] != key:
            self.status.error("The image was removed or changed while the boxes were made; press Propose again.")
            return
        layer = boxes_ui.show_boxes(self.viewer, image, boxes, self.generator.classes, slices)
        self.viewer.layers.selection.active = layer  # ready for review
        self.status.info(f"{len(boxes)} box(es) on {len(slices)} slice(s) on '{layer.name}'. Move, resize or "
                         "delete boxes there (select mode), then press Segment boxes.")

    def refine(self) -> None:
        """Masks for the reviewed boxes (SAM2, or the generator alone), in a worker; written in :meth:`_refined`."""
        stages, follow = int(self.segment_form.stages.value), bool(self.segment_form.follow.value)
        if self.running or self.generator is None:
            return
        image = self.segment_picker.layer()
        follow = follow and image is not None and len(layer_shape(image)) == 3
        model = self.workspace.model
        if (stages or follow) and self._model_or_complain() is None:
            return
        try:
            image = self._segment_image()
            layer = boxes_ui.boxes_layer(self.viewer, image)
            if layer is None:
                raise SliceError("No boxes yet: press Propose boxes first.")
            boxes = boxes_ui.reviewed_boxes(layer, self.generator.classes)
            if not boxes:
                raise SliceError(f"'{layer.name}' has no boxes: propose some or draw rectangles there.")
            target = self.target_picker.layer()
            if target is not None and layer_shape(target) != layer_shape(image):
                raise SliceError(f"'{target.name}' is {layer_shape(target)} but the image is "
                                 f"{layer_shape(image)}: pick labels made for it, or '(new Labels layer)'.")
            if target is not None and not held_in_memory(target.data):
                raise SliceError(f"'{target.name}' is not held in memory (e.g. a lazily read file): "
                                 "pick another Labels layer, or '(new Labels layer)'.")
            if follow and 4 * int(np.prod(layer_shape(image))) > dense_limit_bytes():
                raise SliceError("Follow through the stack holds the whole stack's labels while it runs, and this "
                                 "stack is too long for that: untick Follow (each box is then segmented on its own slice).")
        except (SliceError, ValueError) as err:
            self.status.error(str(err))
            return
        from ..autoseg.refine import RefineOptions

        options = RefineOptions(stages=stages, follow=follow)
        key = slice_cache_key(image, (0,))[0]  # the stack's part of every slice's key, as in the other docks
        how = (f"SAM2 ({stages} stage(s))" if stages else "the generator alone") + \
            (", each followed through the stack" if follow else "")
        self.status.info(f"Segmenting {len(boxes)} box(es) with {how}…")
        mapping = dict(rgb=bool(image.rgb), contrast_limits=list(image.contrast_limits), gamma=float(image.gamma),
                       key=key)
        if follow:  # the reviewed boxes are the key slices; the worker follows them into a copy
            occupied = None if target is None else np.asarray(target.data) != 0
            job, args, write = follow_boxes, (occupied,), lambda run: lambda lab, cls: write_followed(lab, cls, run)
        else:
            job, args, write = refine_boxes, (), lambda objects: lambda lab, cls: _write_boxes(lab, cls, objects)
        self._job(job, model, self.generator, image.data, boxes, *args, options=options, **mapping,
                  done=lambda out: self._refined(image, target, key, write(out), len(boxes), options, model),
                  what="refinement", layers=(image, target))

    # ------------------------------------------------------------------ writing and undo
    def _outputs(self, image: Any, target: Any) -> tuple[Any, Any]:
        """The target chosen when the run started (a new Labels layer for ``None``) and its class-map layer."""
        shape = layer_shape(image)
        if target is None:
            target = unwrap(self.viewer.add_labels(new_label_volume(shape), name=f"{image.name} objects",
                                                   scale=image.scale, translate=image.translate,
                                                   metadata=objects_metadata(image)))
            self.target_picker.set_layer(target)
        classes = self._class_layers.get(str(target.unique_id))
        if classes is None or classes not in self.viewer.layers:
            classes = unwrap(self.viewer.add_labels(new_label_volume(shape), name=f"{target.name} classes",
                                                    scale=image.scale, translate=image.translate))
            self._class_layers[str(target.unique_id)] = classes
        names = ["background", *self.generator.classes]
        classes.features = {"index": list(range(len(names))), "class": names}
        return target, classes

    def _refined(self, image: Any, target: Any, key: Any, write: Any, n_boxes: int, options: Any,
                 model: Any) -> None:
        """Write a run's objects (``write(labels, classes)`` gives the two changes and the objects written)."""
        if image not in self.viewer.layers or slice_cache_key(image, (0,))[0] != key:
            self.status.error("The image was removed or changed during the refinement; nothing written.")
            return
        target, classes = self._outputs(image, target)
        change, class_change, ids = write(target.data, classes.data)
        target.refresh()
        classes.refresh()
        step = self._record_run([(target, change), (classes, class_change)])
        sam2 = options.stages or options.follow
        run = {"written": ids, "boxes": n_boxes, "options": options, "model": model if sam2 else None,
               "generator": self.generator, "generator_file": self._generator_file}
        saved = autoseg_saved(self.viewer, image, target, change, run, step, self._report)
        self.status.info(f"{len(ids)} object(s) from {n_boxes} box(es) written into '{target.name}' "
                         f"({change.size} pixels, only where it was empty); classes in '{classes.name}'. "
                         f"Undo (or Ctrl-Z on either layer) reverts this run.{saved}")

    def _report(self, text: str, level: str = "error") -> None:
        getattr(self.status, level)(text)

    def _record_run(self, writes: list[tuple[Any, LabelChange]]) -> Any:
        """One run's writes become one step in each layer's undo history, tied together; returns the first step.

        Undoing either (the dock's Undo, Ctrl-Z on the target or on its class
        map) undoes both; redoing either redoes both.
        """
        steps = []
        for layer, change in writes:
            history = history_for(self.viewer, layer)
            steps.append((history, history.push(change, f"automatic run ({change.size} px)", owner="autoseg")))
        undo_together(steps)
        self._written = writes[0][0]
        self._buttons()
        return steps[0][1]

    def _undo_layer(self) -> Any:
        target = self.target_picker.layer()
        if target is None and self._written is not None and self._written in self.viewer.layers:
            target = self._written
        return target

    def undo(self) -> None:
        """Undo the newest change of the 'Write into' layer (a run: its objects and classes), as Ctrl-Z on it."""
        if not self.running:
            self.undo_control.undo()


def _write_boxes(labels: Any, classes: Any, objects: list) -> tuple[LabelChange, LabelChange, list]:
    """:func:`write_objects` with the ``(label id, object)`` of each object written."""
    ids: list = []
    change, class_change, _ = write_objects(labels, classes, objects, ids)
    return change, class_change, ids
