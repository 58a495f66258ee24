""""One-shot segmentation": a view over :mod:`napari_rpsam2.app.oneshot` and its re-run helpers.

The person paints one slice of a stack, picks a method and presses Run; a
worker segments every other slice (``propagate_from_slice``), the masks go
into the target Labels layer only where it is 0, the generated clicks appear
on the image's one-shot clicks layer.  Any click can be moved, deleted or
added, and "Re-run this slice from its clicks" segments the slice on screen
again from them.  Undo reverts the newest run or re-run, one at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, SpinBox
from napari.layers import Image, Labels
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..app.oneshot import merge_results, propagate_from_slice
from ..app.oneshot_options import OneShotSettings, parse_counts
from ..app.oneshot_rerun import RunHistory, rerun_slice, slice_masks
from ..io.label_volume import held_in_memory, new_label_volume
from ..jobs import CancelFlag
from . import _oneshot_clicks as clicks_ui
from ._job_dock import JobDock
from ._label_history import UndoControl, history_for
from ._layer_picker import LayerPicker
from ._objects_layer import DefaultTarget, objects_metadata
from ._slicing import SliceError, image_slice, labels_plane, layer_shape
from ._torch_import import import_torch_compiler
from ._views import StatusLabel, scrolling_dock
from ._workers import error_text, start_worker
from ._workfolder_runs import oneshot_saved, slice_rerun_saved
from ._workspace import unwrap

if TYPE_CHECKING:
    import napari

    from ..app.oneshot import OneShotOutcome

__all__ = ["METHOD_CHOICES", "OneShotWidget"]

METHOD_CHOICES = [("PerSAM (baseline)", "persam"), ("P²SAM (part-aware)", "p2sam"),
                  ("Med-PerSAM (warping)", "medpersam")]
STAGES = {"warping": "training the warping model", "slices": "slices"}
NEGATIVE_RULE_CHOICES = [("Medical (background)", "medical"), ("Natural (minimum)", "natural")]
ORGAN_CHOICES = [("Single (5 + 5)", "single"), ("Bilateral (10 + 10)", "bilateral")]
# which method shows which setting
METHOD_SETTINGS = {"guided_attention": ("persam",), "semantic_prompt": ("persam", "medpersam"),
                   "negative_rule": ("p2sam",), "negatives": ("p2sam",), "warp_steps": ("medpersam",),
                   "rounds": ("medpersam",), "retrain_epochs": ("medpersam",), "refinements": ("medpersam",),
                   "organ": ("medpersam",), "clicks": ("medpersam",), "kernel": ("medpersam",)}


def _propagate_job(*args: Any, method: str, **kwargs: Any) -> OneShotOutcome:
    """The worker's job; Med-PerSAM trains with torch's optimizers, whose compiler stack is imported here."""
    if method == "medpersam":
        import_torch_compiler()
    return propagate_from_slice(*args, method=method, **kwargs)


def parse_ids(text: str) -> list[int] | None:
    """``"1, 3"`` → ``[1, 3]``; empty → ``None`` (every id on the reference slice)."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise SliceError(f"Object ids must be whole numbers separated by commas (got '{text}').") from None
    return ids or None


def _optional_count(text: str, what: str) -> int | None:
    """Empty → ``None`` (the default); otherwise a whole number of at least 1."""
    text = str(text).strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{what}: type a whole number of at least 1, or leave it empty for the default "
                         f"(got '{text}').")
    return int(text)


def _method_settings() -> list:
    """The per-method settings (shown for their method only), with the papers' defaults."""
    d = OneShotSettings()
    return [
        CheckBox(name="guided_attention", text="Target-guided attention", value=d.guided_attention,
                 tooltip="PerSAM: the similarity map steers the decoder's attention to the target"),
        CheckBox(name="semantic_prompt", text="Target-semantic prompt", value=d.semantic_prompt,
                 tooltip="Add the target's mean feature to the decoder's tokens"),
        ComboBox(name="negative_rule", label="Negatives", choices=NEGATIVE_RULE_CHOICES, value=d.negative_rule,
                 tooltip="P²SAM: negatives from the reference background's clusters (medical images) or one at "
                         "the least similar place (natural images)"),
        LineEdit(name="negatives", label="Negative clicks", value="1",
                 tooltip="P²SAM: a number (1), or a range to retrieve from (e.g. 1-5)"),
        SpinBox(name="warp_steps", label="Warping steps", value=d.warp_steps, min=1, max=100_000,
                tooltip="Med-PerSAM: training steps of the warping model"),
        SpinBox(name="rounds", label="Retraining rounds", value=d.rounds, min=0, max=100,
                tooltip="Med-PerSAM: rounds of retraining the warping model on SAM2's masks (paper: 5)"),
        SpinBox(name="retrain_epochs", label="Epochs per round", value=d.retrain_epochs, min=1, max=1000,
                tooltip="Med-PerSAM: passes over the slices in each retraining round (paper: 10)"),
        SpinBox(name="refinements", label="Prompt refinements", value=d.refinements, min=0, max=20,
                tooltip="Med-PerSAM: prompts regenerated from SAM2's previous mask (paper: 1)"),
        ComboBox(name="organ", label="Organ type", choices=ORGAN_CHOICES, value=d.organ,
                 tooltip="Med-PerSAM: how many clicks, and whether half come from each side"),
        LineEdit(name="clicks", label="Clicks of each kind", value="",
                 tooltip="Med-PerSAM: positive and negative clicks each; empty = by organ type (5 or 10)"),
        LineEdit(name="kernel", label="Kernel radius (px)", value="",
                 tooltip="Med-PerSAM: erosion/dilation radius in pixels; empty = 15 % of the mask's radius"),
    ]


class OneShotWidget(JobDock):
    """Segment a whole stack from one annotated slice (PerSAM, P²SAM, Med-PerSAM)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.history = RunHistory()
        self.history_target: Any = None
        self.last_outcome: OneShotOutcome | None = None
        self._image: Any = None  # the image of the last run
        self._saving: dict = {}  # what the work folder records of the running job
        self._bridge.message.connect(self._progress)

        v = self.viewer
        self.image_picker = LayerPicker(v, (Image,))
        self.labels_picker = LayerPicker(v, (Labels,))
        self.target_picker = LayerPicker(v, (Labels,), allow_none="(new Labels layer)")
        # by default the image's objects layer (the click dock's commits), else a new layer
        self.default_target = DefaultTarget(v, self.target_picker, self.image_picker.layer)
        self.image_picker.currentIndexChanged.connect(self.default_target.update)
        self.reference = QSpinBox()
        self.reference.setRange(-1, 1_000_000)
        self.reference.setSpecialValueText("slice on screen")
        self.reference.setValue(-1)
        self.reference.setToolTip("The annotated slice; 'slice on screen' takes the one shown when you press Run")
        self.form = Container(widgets=[
            LineEdit(name="object_ids", label="Object ids", value="",
                     tooltip="Ids to propagate, e.g. '1, 3'; empty = every id on the reference slice"),
            ComboBox(name="method", label="Method", choices=METHOD_CHOICES, value="persam"),
            CheckBox(name="refine", text="Refine clicks (RP-SAM2 shift block)", value=False,
                     tooltip="Move every generated positive click with the shift block first"),
            *_method_settings(),
        ])
        self.form.clicks.native.setPlaceholderText("by organ type")
        self.form.kernel.native.setPlaceholderText("automatic")
        self.method = self.form.method
        self.form.method.changed.connect(self._method_changed)
        self.form.negative_rule.changed.connect(self._method_changed)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.rerun_button = QPushButton("Re-run this slice from its clicks")
        self.rerun_button.setToolTip("Segment the slice on screen again from the clicks on it (move, delete or "
                                     "add clicks first); replaces what the runs wrote on this slice only")
        self.undo_button = QPushButton("Undo")
        self.progress = QProgressBar()
        self.status = StatusLabel("Paint the objects on one slice, pick its Labels layer and press Run.")
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.rerun_button.clicked.connect(self.rerun)
        self.undo_button.clicked.connect(self.undo)
        self.undo_control = UndoControl(self.viewer, self.undo_button, self._undo_layer,
                                        lambda level, text: getattr(self.status, level)(text),
                                        enabled=lambda: not self.running)
        scrolling_dock(self, self._panel())
        self._method_changed()
        self._buttons()

    def _panel(self) -> QWidget:
        panel = QWidget()
        lay = QVBoxLayout(panel)
        form = QFormLayout()
        form.addRow("Image (stack)", self.image_picker)
        form.addRow("Reference labels", self.labels_picker)
        form.addRow("Reference slice", self.reference)
        lay.addLayout(form)
        self.form.native.layout().setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.form.native)
        out = QFormLayout()
        out.addRow("Write into", self.target_picker)
        lay.addLayout(out)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        row = QHBoxLayout()
        row.addWidget(self.rerun_button)
        row.addWidget(self.undo_button)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addStretch(1)
        return panel

    def _method_changed(self, *_: Any) -> None:
        for name, methods in METHOD_SETTINGS.items():
            getattr(self.form, name).visible = self.method.value in methods
        if self.method.value == "p2sam":
            self.form.negatives.visible = self.form.negative_rule.value == "medical"

    def settings(self) -> OneShotSettings:
        """The method settings as the form shows them (raises ``ValueError`` saying what to fix)."""
        f = self.form
        medical = self.method.value == "p2sam" and f.negative_rule.value == "medical"
        return OneShotSettings(
            guided_attention=bool(f.guided_attention.value), semantic_prompt=bool(f.semantic_prompt.value),
            negative_rule=f.negative_rule.value,
            negatives=parse_counts(f.negatives.value, "Negative clicks") if medical else (1,),
            warp_steps=int(f.warp_steps.value), rounds=int(f.rounds.value), retrain_epochs=int(f.retrain_epochs.value),
            refinements=int(f.refinements.value), organ=f.organ.value,
            clicks=_optional_count(f.clicks.value, "Clicks of each kind"),
            kernel=_optional_count(f.kernel.value, "Kernel radius"))

    def _buttons(self) -> None:
        running = self.running
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running and not self._cancel())
        self.rerun_button.setEnabled(not running and self.last_outcome is not None)
        self.undo_control.update()

    def cleanup(self) -> None:
        """Stop a running job and stop following the viewer (the dock closed)."""
        self.cancel()
        self.undo_control.disconnect()
        self.default_target.disconnect()
        for picker in (self.image_picker, self.labels_picker, self.target_picker):
            picker.disconnect_viewer()

    # ------------------------------------------------------------------ run
    def _inputs(self) -> dict[str, Any]:
        """Everything a run needs from the form, checked (raises SliceError with what to do)."""
        image = self.image_picker.layer()
        if image is None or len(layer_shape(image)) != 3 or image.multiscale:
            raise SliceError("Pick an image stack (3D, or 3D RGB) to segment.")
        labels = self.labels_picker.layer()
        if labels is None:
            raise SliceError("Pick the Labels layer holding the painted reference slice.")
        n, h, w = layer_shape(image)
        ref = self.reference.value()
        if ref < 0:
            ref = image_slice(self.viewer, image).index[0]
        if ref >= n:
            raise SliceError(f"Reference slice {ref} is outside the stack of {n} slices.")
        plane = labels_plane(labels, (ref,), (h, w))
        ids = parse_ids(self.form.object_ids.value)
        present = sorted(int(i) for i in np.unique(plane) if i != 0)
        if not present:
            raise SliceError(f"Slice {ref} of '{labels.name}' has no labels: paint the objects there first.")
        missing = [i for i in ids or [] if i not in present]
        if missing:
            raise SliceError(f"Object id(s) {missing} are not on slice {ref}; its ids are {present[:20]}.")
        target = self.target_picker.layer()
        if target is not None and layer_shape(target) != (n, h, w):
            raise SliceError(f"'{target.name}' is {layer_shape(target)} but the stack is {(n, h, w)}: "
                             "pick labels made for this stack, or '(new Labels layer)'.")
        if target is not None and not held_in_memory(target.data):
            raise SliceError(f"'{target.name}' is not held in memory; pick another Labels layer.")
        return {"image": image, "ref": ref, "plane": plane, "ids": ids, "n": n}

    def run(self) -> None:
        """Segment every other slice in a worker; results arrive in :meth:`_ran`."""
        if self.running or (model := self._model_or_complain()) is None:
            return
        method = self.method.value
        try:
            got = self._inputs()
            options = self.settings().options(method)
        except (SliceError, ValueError) as err:
            self.status.error(str(err))
            return
        image, chosen = got["image"], self.target_picker.layer()  # the target is fixed when Run is pressed
        flag = self._begin_job()
        n_targets = got["n"] - 1
        self.status.info(f"Segmenting {n_targets} slice(s) from slice {got['ref']} with "
                         f"{self.method.native.currentText()}… the viewer stays usable.")
        send, data = self._bridge.send, image.data
        self._saving = {"reference": got["plane"], "model": model, "refine": bool(self.form.refine.value),
                        "options": {"method_options": options, "object_ids": got["ids"]}}  # for the work folder
        # merged in the GUI thread, against the layer as it is then (no scratch volume)
        start_worker(_propagate_job, model, data, got["ref"], got["plane"], None, method=method,
                     refine=bool(self.form.refine.value), object_ids=got["ids"], method_options=options,
                     key=image_slice(self.viewer, image, (got["ref"],)).key[0], rgb=bool(image.rgb),
                     contrast_limits=list(image.contrast_limits), gamma=float(image.gamma),
                     progress=lambda stage, done, total: None if flag() else send((stage, done, total)),
                     cancel=flag, on_return=lambda out: self._ran(flag, image, got["ref"], out, chosen),
                     on_error=lambda err: self._failed(flag, err), on_finish=lambda: self._end_job(flag))

    def _progress(self, msg: tuple) -> None:
        stage, done, total = msg
        self._show_stage(STAGES.get(stage, stage), done, total)

    def _failed(self, flag: CancelFlag, err: BaseException) -> None:
        if flag():
            self.status.info("Cancelled: no labels were written.")
        else:
            self.status.error(f"Segmentation failed: {error_text(err)}")

    def _target(self, image: Any, target: Any) -> Any:
        """``target`` (chosen at Run), or for ``None`` a new layer on the image's grid, then chosen in the picker."""
        if target is None:
            target = unwrap(self.viewer.add_labels(new_label_volume(layer_shape(image)),
                                                   name=f"{image.name} one-shot", scale=image.scale,
                                                   translate=image.translate, metadata=objects_metadata(image)))
            self.target_picker.set_layer(target)
        if target is not self.history_target:
            self.history, self.history_target = RunHistory(), target
        return target

    def _ran(self, flag: CancelFlag, image: Any, ref: int, outcome: OneShotOutcome, chosen: Any = None) -> None:
        if flag():
            self.status.info("Cancelled: no labels were written.")
            return
        if image not in self.viewer.layers or (chosen is not None and chosen not in self.viewer.layers):
            self.status.error("A layer of the run was removed while it was being segmented; nothing written.")
            return
        target = self._target(image, chosen)
        edit = merge_results(target.data, outcome.results)
        layer = clicks_ui.clicks_layer(self.viewer, image)
        step = self._push(target, edit, f"one-shot run from slice {ref} ({edit.size} px)", layer)
        clicks_ui.show_clicks(layer, outcome.clicks)
        target.refresh()
        self.viewer.layers.selection.active = layer  # ready for corrections
        self.last_outcome, self._image = outcome, image
        saved = oneshot_saved(self.viewer, image, target, outcome, edit, ref, self._saving, step,
                              self._report)  # the work folder, with the run's undos and redos
        self.status.info(f"{len(outcome.results)} slice(s) segmented from slice {ref}: {edit.size} pixels written "
                         f"into '{target.name}' (existing labels untouched). Correct any click on "
                         f"'{layer.name}' and press Re-run on that slice; Undo reverts the run.{saved}")

    # ------------------------------------------------------------------ corrections
    def rerun(self) -> None:
        """Segment the slice on screen again from the (edited) clicks on it."""
        if self.running or self.last_outcome is None:
            return
        image, target = self._image, self.history_target
        if (model := self._model_or_complain()) is None:
            return
        if image not in self.viewer.layers or target not in self.viewer.layers:
            self.status.error("The image or the labels of the last run were removed; press Run again.")
            return
        layer = clicks_ui.clicks_layer(self.viewer, image)
        try:
            sl = image_slice(self.viewer, image)
        except SliceError as err:
            self.status.error(str(err))
            return
        index = sl.index[0]
        got = clicks_ui.slice_clicks(layer, index)
        if not len(got.points):
            self.status.error(f"No clicks on slice {index}: add some on '{layer.name}' (or go to a segmented slice).")
            return
        flag = self._begin_job()
        self._saving = {"clicks": got, "model": model}  # for the work folder
        self.status.info(f"Re-running slice {index} from its {len(got.points)} click(s)…")
        start_worker(slice_masks, model, sl.plane, got.points, got.labels, got.object_ids, key=sl.key, rgb=sl.rgb,
                     contrast_limits=list(image.contrast_limits), gamma=float(image.gamma),
                     guidance=self.last_outcome.guidance,
                     on_return=lambda masks: self._rerun_done(flag, target, index, masks),
                     on_error=lambda err: self._failed(flag, err), on_finish=lambda: self._end_job(flag))

    def _rerun_done(self, flag: CancelFlag, target: Any, index: int, masks: dict) -> None:
        if flag() or target not in self.viewer.layers:
            return
        edit = rerun_slice(target.data, index, masks, self.history.written(target.data, index))
        step = self._push(target, edit, f"one-shot re-run of slice {index} ({edit.size} px)", None)
        target.refresh()
        saved = slice_rerun_saved(self.viewer, self._image, target, index, self._saving["clicks"], edit,
                                  self._saving["model"], self.last_outcome.method, step, self._report)
        self.status.info(f"Slice {index} re-segmented from its clicks ({edit.size} pixels changed); "
                         f"other slices unchanged.{saved}")

    def _push(self, target: Any, edit: Any, description: str, layer: Any) -> Any:
        """A run or re-run is one step of the layer's history (returned): Undo and Ctrl-Z on the layer revert it.

        Undoing a run also puts back the clicks shown before it (``layer``);
        redoing it shows the run's clicks again.
        """
        runs, entry = self.history, (edit, None if layer is None else (layer, clicks_ui.snapshot(layer)))
        runs.edits.append(entry)
        shown: dict = {}

        def on_undo(_step: Any) -> None:
            if entry in runs.edits:
                runs.edits.remove(entry)
            if layer is not None and layer in self.viewer.layers:
                shown["clicks"] = clicks_ui.snapshot(layer)
                clicks_ui.restore(layer, entry[1][1])

        def on_redo(_step: Any) -> None:
            runs.edits.append(entry)
            if "clicks" in shown and layer in self.viewer.layers:
                clicks_ui.restore(layer, shown.pop("clicks"))

        return history_for(self.viewer, target).push(edit, description, owner="one-shot", on_undo=on_undo,
                                                      on_redo=on_redo)

    def _undo_layer(self) -> Any:
        target = self.history_target
        return target if target is not None and target in self.viewer.layers else self.target_picker.layer()

    def undo(self) -> None:
        """Undo the latest change to the labels of the last run: a run (and the clicks it showed), a re-run,
        or whatever was written there since (the same as Ctrl-Z on that layer)."""
        if not self.running:
            self.undo_control.undo()
