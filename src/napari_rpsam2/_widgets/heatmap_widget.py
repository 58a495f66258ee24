"""Click-sensitivity heatmap dock widget: the Dice one gets by clicking each grid point."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..model.shift_block import offset_is_identity
from ._slicing import SliceError, image_slice, labels_plane
from ._workers import (Bridge, CancelFlag, ClickModelUser, LayerPicker, StatusLabel, error_text, find_click_widget,
                       start_worker)

if TYPE_CHECKING:
    import napari

    from ..evaluation.sensitivity import SensitivityMap
    from ..model import RPSAM2

__all__ = ["HeatmapWidget", "sensitivity_maps"]

CLICK_WIDGET = "Click segmentation (RP-SAM2)"


def sensitivity_maps(model: "RPSAM2", plane: np.ndarray, mask: np.ndarray, *, stride: int | None, rgb: bool,
                     key: Any, refined: bool, progress=None, cancel=None) -> list["SensitivityMap"]:
    """SAM2 (and, when ``refined``, RP-SAM2) sensitivity maps of one object (Qt-free)."""
    from ..evaluation.sensitivity import heatmap

    maps = []
    for i, refine in enumerate((False, True) if refined else (False,)):
        def step(done: int, total: int, _i: int = i) -> None:
            if progress is not None:
                progress(_i * total + done, total * (2 if refined else 1))

        maps.append(heatmap(model, plane, mask, stride=stride, refine=refine, rgb=rgb, key=key,
                            progress=step, cancel=cancel))
    return maps


def stats_html(maps: list["SensitivityMap"]) -> str:
    """A small table: mean, std, min Dice and share of clicks below 0.5 per method."""
    names = {"sam2": "SAM2", "rpsam2": "RP-SAM2"}
    head = "".join(f"<th>{names[m.method]}</th>" for m in maps)
    stats = [m.stats() for m in maps]
    rows = [("clicks", lambda s: f"{s['points']}"), ("mean Dice", lambda s: f"{s['mean']:.3f}"),
            ("std", lambda s: f"{s['std']:.3f}"), ("min", lambda s: f"{s['min']:.3f}"),
            ("clicks with Dice &lt; 0.5", lambda s: f"{100 * s['share_below_0.5']:.0f}%")]
    body = "".join(f"<tr><td>{name}</td>" + "".join(f"<td align='right'>{fmt(s)}</td>" for s in stats) + "</tr>"
                   for name, fmt in rows)
    return f"<table cellspacing='6'><tr><th></th>{head}</tr>{body}</table>"


class HeatmapWidget(ClickModelUser, QWidget):
    """Grid-sensitivity heatmap of one object for SAM2 and RP-SAM2.

    Uses the model of the click widget (or one given with :meth:`set_model`).
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._model: RPSAM2 | None = None
        self._cancel: CancelFlag | None = None
        self._layers: dict[str, Image] = {}
        self.last_maps: list[SensitivityMap] = []
        self._bridge = Bridge()
        self._bridge.progress.connect(self._progress)

        self.image_picker = LayerPicker(napari_viewer, (Image,), exclude=self._is_own)
        self.labels_picker = LayerPicker(napari_viewer, (Labels,))
        self.object_id = QSpinBox()
        self.object_id.setRange(1, 2**31 - 1)
        self.object_id.setToolTip("Id of the object in the Labels layer, on the slice shown")
        self.use_preview = QCheckBox("Use the click widget's current preview instead")
        self.use_preview.toggled.connect(lambda on: (self.labels_picker.setEnabled(not on), self.object_id.setEnabled(not on)))
        self.stride = QSpinBox()
        self.stride.setRange(0, 512)
        self.stride.setSpecialValueText("auto")
        self.stride.setSuffix(" px")
        self.stride.setToolTip("Grid spacing; auto gives about 12×12 points inside the object")
        self.run_button = QPushButton("Compute heatmap")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("grid clicks %v/%m")
        self.stats = QLabel()
        self.status = StatusLabel("Pick an object and press Compute heatmap. Uses the click widget's model.")

        lay = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("Image", self.image_picker)
        form.addRow("Labels", self.labels_picker)
        form.addRow("Object id", self.object_id)
        form.addRow(self.use_preview)
        form.addRow("Grid stride", self.stride)
        lay.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.stats)
        lay.addWidget(self.status)
        lay.addStretch(1)

    def _is_own(self, layer: Any) -> bool:
        return any(layer is own for own in self._layers.values())

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """Whether a heatmap is being computed."""
        return self._cancel is not None

    def _reference(self) -> tuple[Any, np.ndarray, str]:
        """``(image slice, object mask, description)``."""
        if self.use_preview.isChecked():
            click = find_click_widget(self.viewer)
            shown = None if click is None else click.preview_mask()
            if shown is None:
                raise SliceError("No preview: click on an object in the click widget first, or pick a Labels object.")
            index, mask = shown
            return image_slice(self.viewer, self.image_picker.layer(), index), mask, "preview"
        sl = image_slice(self.viewer, self.image_picker.layer())
        labels = self.labels_picker.layer()
        if labels is None:
            raise SliceError("No Labels layer: pick the labels of the object (or use the click widget's preview).")
        plane = labels_plane(labels, sl.index, sl.plane.shape[:2])
        oid = self.object_id.value()
        mask = plane == oid
        if not mask.any():
            ids = [int(i) for i in np.unique(plane) if i != 0][:20]
            where = f" on slice {sl.index[0]}" if sl.index else ""
            raise SliceError(f"Object {oid} is not in '{labels.name}'{where}; ids there: {ids or 'none'}.")
        return sl, mask, f"object {oid}"

    def run(self) -> None:
        """Compute the heatmap(s) in a worker."""
        if self.running:
            return
        model = self.model
        if model is None:
            self.status.error(f"No model: open '{CLICK_WIDGET}' (Plugins ▸ RP-SAM2) and load a model there.")
            return
        try:
            sl, mask, what = self._reference()
        except SliceError as err:
            self.status.error(str(err))
            return
        refined = not offset_is_identity(model.shift_block)
        stride = self.stride.value() or None
        flag = self._cancel = CancelFlag()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.info(f"Clicking every grid point of {what}" + (" with SAM2 and RP-SAM2…" if refined else
                         " with SAM2 (the shift block is untrained, so RP-SAM2 would be identical)…"))

        def progress(done: int, total: int) -> None:
            if not flag():
                self._bridge.send_progress(done, total)

        start_worker(sensitivity_maps, model, sl.plane, mask, stride=stride, rgb=sl.rgb, key=sl.key,
                     refined=refined, progress=progress, cancel=flag,
                     on_return=lambda maps: self._show(flag, sl, what, maps),
                     on_error=lambda err: self._failed(flag, err), on_finish=lambda: self._finished(flag))

    def cancel(self) -> None:
        """Stop the computation (between chunks of grid clicks)."""
        if self._cancel is not None:
            self._cancel.set()
            self.status.info("Cancelling…")

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _finished(self, flag: CancelFlag) -> None:
        if flag is self._cancel:
            self._cancel = None
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)

    def _failed(self, flag: CancelFlag, err: BaseException) -> None:
        if flag():
            self.status.info("Cancelled; no heatmap added.")
        else:
            self.status.error(f"Heatmap failed: {error_text(err)}")

    def _show(self, flag: CancelFlag, sl: Any, what: str, maps: list["SensitivityMap"]) -> None:
        if flag():
            self.status.info("Cancelled; no heatmap added.")
            return
        image = sl.layer
        where = f" slice {sl.index[0]}" if len(sl.index) == 1 else ""
        for smap in maps:
            method = "RP-SAM2" if smap.refine else "SAM2"
            name = f"Dice heatmap {method}"
            data = np.asarray(smap.dice_map, dtype=np.float32)
            layer = self._layers.get(name)
            if layer is not None and layer in self.viewer.layers and layer.data.shape == data.shape:
                layer.data = data
                layer.scale, layer.translate = image.scale[-2:], image.translate[-2:]
            else:
                layer = Image(data, name=name, colormap="viridis", contrast_limits=(0.0, 1.0), opacity=0.8,
                              scale=image.scale[-2:], translate=image.translate[-2:], blending="translucent")
                self._layers[name] = layer
                self.viewer.add_layer(layer)
            layer.contrast_limits = (0.0, 1.0)
            layer.metadata["rpsam2"] = {"image": image.name, "reference": what, "slice": list(sl.index),
                                        "stats": smap.stats(), "stride": smap.stride}
        if len(maps) > 1:  # RP-SAM2 on top, SAM2 hidden: toggle the eye to compare
            self._layers["Dice heatmap SAM2"].visible = False
        self.last_maps = maps
        self.stats.setText(stats_html(maps))
        self.stats.setMinimumHeight(self.stats.sizeHint().height())
        self.status.info(f"Heatmap of {what} on '{image.name}'{where}: stride {maps[0].stride:g} px, "
                         f"{len(maps[0].dice)} clicks. Colour = Dice of the click's mask (0–1).")
