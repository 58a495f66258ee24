"""Click-sensitivity heatmap dock: a view over the viewer's workspace and :mod:`napari_rpsam2.app.heatmap`.

The maps it adds are named after the image (``"<image> Dice SAM2"``,
``"<image> Dice RP-SAM2"``), carry ``metadata["napari_rpsam2"] = {"role":
"heatmap", ...}`` and show napari's colour bar.  On a stack a map lives on its
slice only (a one-slice layer placed at that slice).  A new computation
replaces the previous maps of the same image (found by the image's
``unique_id`` in their metadata, never by name): none stays behind describing
another object, and the maps of other images stay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, SpinBox
from napari.layers import Image, Labels
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..app.heatmap import maps_wanted, object_mask, sensitivity_maps
from ..jobs import CancelFlag, Cancelled
from ._job_dock import JobDock
from ._layer_picker import LayerPicker
from ._slicing import SliceError, image_slice, labels_plane
from ._views import (
    METADATA_KEY,
    NO_MODEL,
    StatusLabel,
    mark_plugin_layer,
    plugin_layers,
    scrolling_dock,
)
from ._workers import error_text, start_worker

if TYPE_CHECKING:
    import napari

    from ..evaluation.sensitivity import SensitivityMap

__all__ = ["HeatmapWidget", "stats_html"]

METHOD = {False: "SAM2", True: "RP-SAM2"}


def stats_html(maps: list["SensitivityMap"], what: str) -> str:
    """A small table: mean, std, min Dice and share of clicks below 0.5 per method."""
    head = "".join(f"<th>{METHOD[m.refine]}</th>" for m in maps)
    stats = [m.stats() for m in maps]
    rows = [("clicks", lambda s: f"{s['points']}"), ("mean Dice", lambda s: f"{s['mean']:.3f}"),
            ("std", lambda s: f"{s['std']:.3f}"), ("min", lambda s: f"{s['min']:.3f}"),
            ("clicks with Dice &lt; 0.5", lambda s: f"{100 * s['share_below_0.5']:.0f}%")]
    body = "".join(f"<tr><td>{name}</td>" + "".join(f"<td align='right'>{fmt(s)}</td>" for s in stats) + "</tr>"
                   for name, fmt in rows)
    return f"<b>{what}</b><table cellspacing='6'><tr><th></th>{head}</tr>{body}</table>"


def map_geometry(image: Any, index: tuple[int, ...], dice_map: np.ndarray) -> tuple[np.ndarray, list, list]:
    """``(data, scale, translate)`` placing a 2D map on slice ``index`` of ``image`` only."""
    scale, translate = list(image.scale), list(image.translate)
    lead = len(scale) - 2
    if lead <= 0:
        return dice_map, scale, translate
    for axis, i in enumerate(index[-lead:]):
        translate[axis] += i * scale[axis]
    return dice_map.reshape((1,) * lead + dice_map.shape), scale, translate


class HeatmapWidget(JobDock):
    """Grid-sensitivity heatmap of one object for SAM2 and (with a trained block) RP-SAM2."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__(napari_viewer)
        self.last_maps: list[SensitivityMap] = []
        self._bridge.message.connect(self._progress)

        self.image_picker = LayerPicker(self.viewer, (Image,))
        self.labels_picker = LayerPicker(self.viewer, (Labels,))
        self.options = Container(widgets=[
            SpinBox(name="object_id", label="Object id", value=1, min=1, max=2**31 - 1,
                    tooltip="Id of the object in the Labels layer, on the slice shown"),
            CheckBox(name="use_preview", value=False, text="Use the click preview instead",
                     tooltip="Map the object the click dock shows as its preview (current slice)"),
            SpinBox(name="stride", label="Grid stride (px)", value=0, min=0, max=512,
                    tooltip="Grid spacing in pixels; 0 = auto (about 12×12 points inside the object)"),
        ])
        self.object_id, self.use_preview, self.stride = (self.options.object_id, self.options.use_preview,
                                                         self.options.stride)
        self.use_preview.changed.connect(self._preview_toggled)
        self.run_button = QPushButton("Compute heatmap")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("grid clicks %v/%m")
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.model_line = QLabel()
        self.model_line.setWordWrap(True)
        self.status = StatusLabel("Pick an object and press Compute heatmap.")
        scrolling_dock(self, self._panel())
        self.workspace.events.model_changed.connect(self._model_changed)
        self.workspace.events.shift_block_changed.connect(self._model_changed)
        self._model_changed()

    def _panel(self) -> QWidget:
        panel = QWidget()
        lay = QVBoxLayout(panel)
        form = QFormLayout()
        form.addRow("Image", self.image_picker)
        form.addRow("Labels", self.labels_picker)
        lay.addLayout(form)
        self.options.native.layout().setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.options.native)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        for w in (self.progress, self.model_line, self.stats, self.status):
            lay.addWidget(w)
        lay.addStretch(1)
        return panel

    def _preview_toggled(self, on: bool) -> None:
        self.labels_picker.setEnabled(not on)
        self.object_id.enabled = not on

    def _model_changed(self, *_: Any) -> None:
        model = self.workspace.model
        if model is None:
            self.model_line.setText(NO_MODEL)
        elif len(maps_wanted(model)) > 1:
            self.model_line.setText("Model: trained shift block → maps for SAM2 and RP-SAM2.")
        else:
            self.model_line.setText("Model: untrained shift block → SAM2 map only (RP-SAM2 would be identical).")

    def cleanup(self) -> None:
        """Stop a running job and stop following the viewer and the workspace."""
        self.cancel()
        for picker in (self.image_picker, self.labels_picker):
            picker.disconnect_viewer()
        self.workspace.events.model_changed.disconnect(self._model_changed)
        self.workspace.events.shift_block_changed.disconnect(self._model_changed)

    # ------------------------------------------------------------------ running
    def _buttons(self) -> None:
        self.run_button.setEnabled(not self.running)
        self.cancel_button.setEnabled(self.running and not self._cancel())

    def _reference(self) -> tuple[Any, np.ndarray, str]:
        """``(image slice, object mask, description)`` of what to map."""
        sl = image_slice(self.viewer, self.image_picker.layer())
        where = f" on slice {sl.index[0]}" if len(sl.index) == 1 else ""
        if self.use_preview.value:
            mine = getattr(sl.layer, "unique_id", None)  # the click dock marks its preview with its image's id
            previews = sorted(plugin_layers(self.viewer, "preview"),
                              key=lambda layer: layer.metadata[METADATA_KEY].get("image") != mine)
            mask = None if not previews else labels_plane(previews[0], sl.index, sl.plane.shape[:2]) != 0
            if mask is None or not mask.any():
                raise SliceError(f"No preview{where}: click on an object with the click dock first, "
                                 "or untick the box and pick a Labels object.")
            return sl, mask, f"the click preview{where}"
        labels = self.labels_picker.layer()
        if labels is None:
            raise SliceError("No Labels layer: pick the labels of the object (or use the click preview).")
        plane = labels_plane(labels, sl.index, sl.plane.shape[:2])
        oid = int(self.object_id.value)
        try:
            mask = object_mask(plane, oid, where=f"'{labels.name}'{where}")
        except ValueError as err:
            raise SliceError(str(err)[0].upper() + str(err)[1:] + ".") from err
        return sl, mask, f"object {oid}{where}"

    def run(self) -> None:
        """Compute the heatmap(s) in a worker."""
        if self.running or (model := self._model_or_complain()) is None:
            return
        try:
            sl, mask, what = self._reference()
        except SliceError as err:
            self.status.error(str(err))
            return
        methods = maps_wanted(model)
        flag = self._begin_job()
        self.status.info(f"Clicking every grid point of {what} with " + " and ".join(METHOD[m] for m in methods)
                         + "…")
        send = self._bridge.send
        start_worker(sensitivity_maps, model, sl.plane, mask, stride=int(self.stride.value) or None,
                     refined=len(methods) > 1, contrast_limits=list(sl.layer.contrast_limits),
                     gamma=sl.layer.gamma, rgb=sl.rgb, key=sl.key,
                     progress=lambda stage, done, total: None if flag() else send((stage, done, total)),
                     cancel=flag, on_return=lambda maps: self._show(flag, sl, what, maps),
                     on_error=lambda err: self._failed(flag, err), on_finish=lambda: self._end_job(flag))

    def _progress(self, msg: tuple) -> None:
        stage, done, total = msg
        self._show_stage(f"{METHOD[stage == 'rpsam2']} grid clicks", done, total)

    def _failed(self, flag: CancelFlag, err: BaseException) -> None:
        if flag() and isinstance(err, Cancelled):  # a real error while cancelling is still shown
            self.status.info("Cancelled; no heatmap added.")
        else:
            self.status.error(f"Heatmap failed: {error_text(err)}")

    def _show(self, flag: CancelFlag, sl: Any, what: str, maps: list["SensitivityMap"]) -> None:
        if flag():
            self.status.info("Cancelled; no heatmap added.")
            return
        image = sl.layer
        old: dict[bool, list] = {}  # this image's maps by method (a duplicated layer is one more)
        for layer in plugin_layers(self.viewer, "heatmap"):
            if layer.metadata[METADATA_KEY].get("image") == image.unique_id:
                old.setdefault(layer.metadata[METADATA_KEY].get("refine"), []).append(layer)
        shown = []
        for smap in maps:
            name = f"{image.name} Dice {METHOD[smap.refine]}"
            data, scale, translate = map_geometry(image, sl.index, np.asarray(smap.dice_map, dtype=np.float32))
            same = old.get(bool(smap.refine), [])
            layer = same.pop(0) if same else None
            if layer is not None and layer.data.shape == data.shape:
                layer.data = data
                layer.scale, layer.translate, layer.name = scale, translate, name
            else:
                if layer is not None:
                    self.viewer.layers.remove(layer)
                layer = self.viewer.add_image(data, name=name, colormap="viridis", contrast_limits=(0.0, 1.0),
                                              opacity=0.8, scale=scale, translate=translate,
                                              blending="translucent")
            layer.contrast_limits = (0.0, 1.0)
            layer.visible = True
            layer.colorbar.visible = True
            mark_plugin_layer(layer, "heatmap", image=image.unique_id, refine=bool(smap.refine), reference=what,
                              slice=list(sl.index),
                              method=smap.method, stats=smap.stats(), stride=smap.stride)
            shown.append(layer)
        for stale in [layer for layers in old.values() for layer in layers]:  # no map may describe another object
            self.viewer.layers.remove(stale)
        if len(shown) > 1:  # RP-SAM2 on top, SAM2 hidden: toggle the eye to compare
            shown[0].visible = False
        self.last_maps = maps
        self.stats.setText(stats_html(maps, f"{what} on '{image.name}'"))
        self.status.info(f"Heatmap of {what}: stride {maps[0].stride:g} px, {len(maps[0].dice)} clicks. "
                         "Colour = Dice of the mask a click there gives (0–1).")
