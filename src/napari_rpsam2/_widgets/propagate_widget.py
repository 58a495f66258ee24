"""Propagate dock: follow objects through a stack with SAM2's memory, into a Labels layer.

Objects are the click dock's clicks on the slice shown (one new object),
rectangles drawn on the dock's box layer (one new object each) and, only when
the person picks a layer in "Objects from", that layer's objects on the slice
shown (mask prompts).  Results go into "Write into": by default the image's
objects layer (where the click dock commits; see :mod:`._objects_layer`), else
a new Labels layer made when the run ends.  The run is the application layer's
(:class:`napari_rpsam2.app.propagation.PropagationRun`, kept per image so that
clicks on a propagated slice correct one object from there with SAM2's
memory); it goes in a napari thread worker, and every finished slice is shown
at once in a temporary plugin layer ("<image> propagating", compact: see
:mod:`._propagate_live`).  Only when the run ends are the objects written
(where the target is 0; a correction replaces its object's pixels), so a
Cancel, or deleting the image or the target, leaves everything untouched;
Undo takes the whole run back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, SpinBox
from napari.layers import Image, Labels, Shapes
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..app.propagation import (
    PropagationOptions,
    PropagationRun,
    PropagationUndo,
    renumber_taken_ids,
    replace_objects,
    write_new_labels,
)
from ..io.label_volume import label_max
from ..jobs import CancelFlag
from ..model.prompts import FramePrompt
from ..model.propagation import DIRECTIONS
from ._job_dock import JobDock
from ._label_history import UndoControl, history_for
from ._layer_picker import LayerPicker
from ._objects_layer import DefaultTarget
from ._propagate_layers import box_layer, new_target
from ._propagate_live import LiveLayer
from ._propagate_prompts import UsedPrompts, box_prompts, click_prompt, mask_prompts
from ._slicing import SliceError, full_resolution, image_slice, layer_shape, slice_cache_key
from ._views import StatusLabel, scrolling_dock
from ._workers import error_text, start_worker
from ._workfolder_runs import propagation_saved

if TYPE_CHECKING:
    import napari

    from ..model.propagation import PropagationResult

__all__ = ["PropagateWidget"]

class PropagateWidget(JobDock):
    """Propagate the objects of one slice through the stack."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self._written: Any = None  # the Labels layer of the last run (Undo's layer when "Write into" is new)
        self._runs: dict[Any, _KeptRun] = {}  # image unique_id -> the run corrections continue
        self.last_result: PropagationResult | None = None
        self._bridge.progress.connect(self._progress)
        self._bridge.message.connect(self._show_frame)
        self._live = LiveLayer(self.viewer)  # the "<image> propagating" layer of a running job
        self.image_picker = LayerPicker(self.viewer, (Image,))
        # objects come from a Labels layer only when the person picks one; results go by default into the
        # image's objects layer (the click dock's commits), else into a new layer
        self.source_picker = LayerPicker(self.viewer, (Labels,), allow_none="(none: clicks and boxes)")
        self.target_picker = LayerPicker(self.viewer, (Labels,), allow_none="(new Labels layer)")
        self.default_target = DefaultTarget(self.viewer, self.target_picker, self.image_picker.layer)
        self.options = Container(widgets=[
            ComboBox(name="direction", label="Direction", choices=list(DIRECTIONS), value="both",
                     tooltip="forward: from the first prompted slice on; backward: from the last one back"),
            SpinBox(name="start", label="From slice", value=0, min=0, max=10**6),
            SpinBox(name="stop", label="To slice", value=0, min=0, max=10**6,
                    tooltip="Last slice tracked (included); the image's last slice when the image is picked"),
            SpinBox(name="stop_after", label="Stop after (slices)", value=0, min=0, max=10**6,
                    tooltip="Drop an object SAM2 has not seen for this many slices in a row; 0 = never"),
            CheckBox(name="refine", value=True, text="Refine clicks (RP-SAM2)"),
            SpinBox(name="correct", label="Correct object", value=0, min=0, max=2**31 - 1,
                    tooltip="After a run, clicks on a slice correct this object there and run it again from "
                            "that slice; 0: the object under the first click (a new object where there is none)"),
        ])
        self.draw_button = QPushButton("Draw boxes")
        self.draw_button.setToolTip("Drag rectangles on the image: each box is one more object to follow")
        self.clear_boxes_button = QPushButton("Clear boxes")
        self.run_button = QPushButton("Propagate")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("frames %v/%m")
        self.progress.setToolTip("Frames tracked so far; with 'both' the prompted slice starts each direction")
        self.status = StatusLabel("Commit objects on one slice (or click one, or draw a box), then Propagate.")
        self.draw_button.clicked.connect(self.draw_boxes)
        self.clear_boxes_button.clicked.connect(self.clear_boxes)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.undo_button.clicked.connect(self.undo)
        self.undo_control = UndoControl(self.viewer, self.undo_button, self._undo_layer,
                                        lambda level, text: getattr(self.status, level)(text))
        self.target_picker.currentIndexChanged.connect(self.undo_control.update)
        self.image_picker.currentIndexChanged.connect(self._on_image)
        self.image_picker.currentIndexChanged.connect(self.default_target.update)
        self.viewer.layers.events.removed.connect(self._on_removed)
        self._job: _Job | None = None
        scrolling_dock(self, self._panel())
        self._on_image()

    def _panel(self) -> QWidget:
        panel = QWidget()
        lay = QVBoxLayout(panel)
        form = QFormLayout()
        form.addRow("Image stack", self.image_picker)
        form.addRow("Objects from", self.source_picker)
        form.addRow("Write into", self.target_picker)
        lay.addLayout(form)
        text = QLabel("Objects: the click dock's clicks on the slice shown, the boxes drawn, and the objects "
                      "of 'Objects from' on that slice. New labels only go where 'Write into' is 0.")
        text.setWordWrap(True)
        lay.addWidget(text)
        self.options.native.layout().setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.options.native)
        for buttons in ((self.draw_button, self.clear_boxes_button),
                        (self.run_button, self.cancel_button, self.undo_button)):
            row = QHBoxLayout()
            for b in buttons:
                row.addWidget(b)
            lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)
        return panel

    def cleanup(self) -> None:
        """Stop a running propagation and stop following the viewer."""
        self.cancel()
        for picker in (self.image_picker, self.source_picker, self.target_picker):
            picker.disconnect_viewer()
        self.viewer.layers.events.removed.disconnect(self._on_removed)
        self.undo_control.disconnect()
        self.default_target.disconnect()

    def _on_image(self, *_: Any) -> None:
        image = self.image_picker.layer()
        if image is not None and image.ndim == 3:
            last = layer_shape(image)[0] - 1
            self.options.start.max = self.options.stop.max = last
            self.options.stop.value = last

    # ------------------------------------------------------------------ boxes
    def box_layer(self, create: bool = False) -> Shapes | None:
        """The dock's Shapes layer of the chosen image (made when ``create``), or ``None``."""
        return box_layer(self.viewer, self.image_picker.layer(), create)

    def draw_boxes(self) -> None:
        """Select the box layer in rectangle mode: the next drags on the canvas draw boxes."""
        image = self.image_picker.layer()
        if image is None or image.ndim != 3:
            self.status.error("Pick an image stack (N, H, W) first.")
            return
        layer = self.box_layer(create=True)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        self.status.info("Drag a rectangle around each object to follow (on any slice).")

    def clear_boxes(self) -> None:
        """Remove every drawn box."""
        layer = self.box_layer()
        if layer is not None and len(layer.data):
            layer.selected_data = set(range(len(layer.data)))
            layer.remove_selected()

    # ------------------------------------------------------------------ prompts
    def prompts(self) -> tuple[Any, Any, list, str, UsedPrompts]:
        """``(image, target, prompts, description, used)`` of what Propagate would send; SliceError if nothing.

        ``used`` names the exact clicks and boxes sent, so that only those are
        dropped once their objects are labels (clicks and boxes added during
        the run stay).
        """
        image, source, target = self.image_picker.layer(), self.source_picker.layer(), self.target_picker.layer()
        if image is None or image.ndim != 3:
            raise SliceError("Pick an image stack (N, H, W) or an RGB stack (N, H, W, 3).")
        shape = layer_shape(image)
        for layer in (source, target):
            if layer is not None and layer_shape(layer) != shape:
                raise SliceError(f"The Labels layer '{layer.name}' is {layer_shape(layer)} but the stack is {shape}; "
                                 "pick the labels of this stack.")
        index = image_slice(self.viewer, image).index[0]
        prompts = [] if source is None else mask_prompts(np.asarray(full_resolution(source)[index]), index)
        next_id = 1 + max([0, *(label_max(full_resolution(ly)) for ly in (source, target) if ly is not None)])
        parts = [f"{len(prompts)} object(s) of '{source.name}' on slice {index}"] if prompts else []
        session = self.workspace.click_sessions.get(image.unique_id)
        clicked = (None if session is None else
                   click_prompt(session.clicks((index,)), index, next_id, box=session.box((index,))))
        used = UsedPrompts()
        if clicked is not None:
            used.session, used.index, used.clicks = session, (index,), session.clicks((index,))
            used.click_box = session.box((index,))
            used.new_ids += (next_id,)
            prompts.append(clicked)
            parts.append(f"the click dock's prompt on slice {index} (object {next_id})")
            next_id += 1
        boxes = self.box_layer()
        rects = [v for v, kind in zip(boxes.data, boxes.shape_type) if kind == "rectangle"] if boxes else []
        if rects:
            used.boxes, used.rects = boxes, [np.array(r) for r in rects]
            used.new_ids += tuple(range(next_id, next_id + len(rects)))
            prompts += box_prompts(rects, shape[-2:], next_id)
            parts.append(f"{len(rects)} box(es)")
        if not prompts:
            raise SliceError(f"Nothing to propagate on slice {index}: click an object there with the click dock, "
                             "draw a box, or pick a Labels layer with objects on this slice in 'Objects from'.")
        return image, target, prompts, ", ".join(parts), used

    # ------------------------------------------------------------------ running
    def _buttons(self) -> None:
        self.run_button.setEnabled(not self.running)
        self.cancel_button.setEnabled(self.running and not self._cancel())

    def run(self) -> None:
        """Propagate in a worker; finished slices appear in the "propagating" layer as they come.

        After a run, clicks on a slice of the same image and Labels layer
        correct an object there: only that object is tracked again, from that
        slice, with SAM2's memory of the earlier run.
        """
        if self.running or (model := self._model_or_complain()) is None:
            return
        try:
            job = self._correction() or self._fresh_run(model)
        except SliceError as err:
            self.status.error(str(err))
            return
        opts = self.options
        options = PropagationOptions(opts.direction.value, int(opts.start.value), int(opts.stop.value) + 1,
                                     bool(opts.refine.value), int(opts.stop_after.value) or None)
        flag = self._begin_job()
        self._job = job
        job.options = options
        self._live.start(job.image)
        self.status.info(f"{'Correcting' if job.objects else 'Propagating'} {job.what}…")
        bridge = self._bridge
        call = job.kept.run.correct if job.objects else job.kept.run.propagate
        start_worker(call, job.prompts, options,
                     progress=lambda stage, done, total: None if flag() else bridge.send_progress(done, total),
                     on_frame=lambda t, plane: None if flag() else bridge.send(LiveLayer.message(flag, t, plane)),
                     cancel=flag, on_return=lambda result: self._write(flag, job, result),
                     on_error=lambda err: self._failed(flag, job, err), on_finish=lambda: self._finished(flag))

    def _fresh_run(self, model: Any) -> "_Job":
        image, target, prompts, what, used = self.prompts()
        run = PropagationRun(model, full_resolution(image), contrast_limits=list(image.contrast_limits),
                             gamma=image.gamma, rgb=bool(image.rgb),
                             key=slice_cache_key(image, (0,))[0])  # the click dock caches slice i under (key, i)
        return _Job(image, target, _KeptRun(run, target), prompts, what, used)

    def _correction(self) -> "_Job | None":
        """The click dock's clicks on the slice shown as a correction of the kept run, if there is one."""
        image, target = self.image_picker.layer(), self.target_picker.layer()
        kept = None if image is None else self._runs.get(image.unique_id)
        if kept is None or kept.target is not target or target not in self.viewer.layers:
            return None
        index = image_slice(self.viewer, image).index[0]
        session = self.workspace.click_sessions.get(image.unique_id)
        clicks = () if session is None else session.clicks((index,))
        if not clicks:
            return None
        volume = full_resolution(target)
        plane = np.asarray(volume[index])
        r, c = (min(max(int(round(v)), 0), n - 1) for v, n in zip((clicks[0].row, clicks[0].col), plane.shape))
        obj = int(self.options.correct.value) or int(plane[r, c])
        new = obj == 0 or obj not in kept.run.object_ids
        if obj == 0:
            obj = max([label_max(volume), *kept.run.object_ids]) + 1
        prompt = click_prompt(clicks, index, obj)
        if prompt is None:
            prompt = FramePrompt(index, obj, points=[(c.row, c.col) for c in clicks],
                                 labels=[int(c.positive) for c in clicks])
        used = UsedPrompts(session=session, index=(index,), clicks=clicks, new_ids=(obj,) if new else ())
        what = f"{'new ' if new else ''}object {obj} from slice {index}"
        return _Job(image, target, kept, [prompt], what, used, objects=(obj,))

    def _show_frame(self, message: tuple) -> None:
        if message[0] is self._cancel and not message[0]():
            self._live.show(self.image_picker.layer(), message)

    def _progress(self, done: int, total: int) -> None:
        self._show_stage("frames", done, total)

    def _finished(self, flag: CancelFlag) -> None:
        if self._end_job(flag):
            self._job = None
            self._live.drop()

    def _on_removed(self, event: Any) -> None:
        """The image or the target of the running job deleted: end the run now; nothing will be written."""
        job, flag = self._job, self._cancel
        if job is None or flag is None or not self.running:
            return
        if event.value is job.image or (job.target is not None and event.value is job.target):
            flag.set()
            self._buttons()
            self.status.error(f"'{event.value.name}' was deleted: the run stops and writes nothing.")

    def _failed(self, flag: CancelFlag, job: "_Job", err: BaseException) -> None:
        if job.objects:  # SAM2's state holds the correction's prompts now: the next Propagate starts afresh
            self._runs.pop(job.image.unique_id, None)
        gone = [ly.name for ly in (job.image, job.target) if ly is not None and ly not in self.viewer.layers]
        if flag():
            self.status.info(f"'{gone[0]}' was deleted: the run stopped; nothing written." if gone else
                             "Cancelled; the Labels layer is unchanged.")
        else:
            self.status.error(f"Propagation failed: {error_text(err)}")

    def _write(self, flag: CancelFlag, job: "_Job", result: PropagationResult) -> None:
        target, used = job.target, job.used
        if flag():
            self._failed(flag, job, RuntimeError("cancelled"))
            return
        if job.image not in self.viewer.layers or (target is not None and target not in self.viewer.layers):
            self._runs.pop(job.image.unique_id, None)
            self.status.error("A layer of the run was deleted while propagating; nothing written.")
            return
        if target is None:  # "(new Labels layer)": made now, so a cancelled or failed run leaves none behind
            target = job.target = job.kept.target = new_target(self.viewer, job.image)
            self.target_picker.set_layer(target)
        try:
            if job.objects:
                renamed, record = {}, replace_objects(full_resolution(target), result, job.objects)
            else:
                result, renamed = renumber_taken_ids(result, full_resolution(target), used.new_ids)
                record = write_new_labels(full_resolution(target), result)
        except ValueError as err:
            self.status.error(f"Cannot write the result: {error_text(err)}")
            return
        target.refresh()
        self.last_result = result
        # a renumbered object no longer matches SAM2's state: corrections start a new run then
        if renamed:
            self._runs.pop(job.image.unique_id, None)
        else:
            self._runs[job.image.unique_id] = job.kept
        step = self._record_undo(target, record, job, result)
        used.forget()
        stopped = "".join(f"; object {oid} stopped at slice {s[0]}" for oid, s in result.stopped.items())
        moved = "".join(f"; object {old} is {new} (id {old} was labelled meanwhile)" for old, new in renamed.items())
        verb = "Corrected object" if job.objects else "Propagated objects"
        ids = job.objects or result.object_ids
        saved = propagation_saved(self.viewer, job, target, result, record, renamed, step,
                                  self._report)  # the image's work folder, with the run's undos and redos
        self.status.info(f"{verb} {', '.join(map(str, ids))} through "
                         f"{int(result.tracked.sum())} slices: {record.pixels} px changed in '{target.name}' "
                         f"on slices {record.slices}{stopped}{moved}.{saved}")

    def _record_undo(self, target: Any, record: PropagationUndo, job: "_Job", result: Any) -> Any:
        """The run is one step of the layer's history (returned): the Undo button and Ctrl-Z take it back."""
        runs, image_id = self._runs, job.image.unique_id
        what = (f"correction of object {', '.join(map(str, job.objects))}" if job.objects else
                f"propagation of object(s) {', '.join(map(str, result.object_ids))}")
        self._written = target
        # SAM2's state still holds what is undone: after an undo the next run starts afresh
        return history_for(self.viewer, target).push(
            record.change, f"{what} ({record.pixels} px)", owner="propagate",
            on_undo=lambda step: runs.pop(image_id, None))

    def _undo_layer(self) -> Any:
        target = self.target_picker.layer()
        if target is None and self._written is not None and self._written in self.viewer.layers:
            target = self._written
        return target

    def undo(self) -> None:
        """Undo the latest change to the 'Write into' layer (the last run, or anything written into it since).

        One history per Labels layer, the same as Ctrl-Z on it; undoing a run
        makes the next Propagate start a new run.
        """
        self.undo_control.undo()


@dataclass
class _KeptRun:
    """A finished run of one image that corrections continue (SAM2's state in the app layer)."""

    run: PropagationRun
    target: Any


@dataclass
class _Job:
    """What one press of Propagate sends: a fresh run (``objects`` empty) or a correction of ``objects``."""

    image: Any
    target: Any
    kept: _KeptRun
    prompts: list
    what: str
    used: UsedPrompts
    objects: tuple[int, ...] = ()
    options: PropagationOptions | None = None
