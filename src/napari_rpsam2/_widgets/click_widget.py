"""Click segmentation dock widget: live RP-SAM2 masks from positive / negative clicks."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Points
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..model.shift_block import offset_is_identity
from ._commit import CommitMixin
from ._logic import NEGATIVE, POSITIVE, CommitRecord, prompts_on_slice, vectors_from
from ._model_settings import ModelSettings
from ._slicing import ImageSlice, SliceError, image_slice, layer_shape
from ._click_layers import ROLES, ensure_click_layers
from ._embedder import BackgroundEmbedder
from ._workers import (LayerPicker, StatusLabel, bind_keys, cancel_when_destroyed, error_text, start_worker,
                       unbind_keys)

if TYPE_CHECKING:
    import napari

    from ..model import RPSAM2, SegmentResult

__all__ = ["ClickWidget", "KEYS"]

KEYS = {"commit": "Shift-C", "clear": "Shift-X", "toggle": "Shift-R"}
"""Viewer key bindings while the widget is open."""
NEGATIVE_MODIFIER = "Shift"
COLORS = {POSITIVE: (0.2, 0.9, 0.2, 1.0), NEGATIVE: (1.0, 0.25, 0.25, 1.0)}
DEBOUNCE_MS = 120


class ClickWidget(CommitMixin, QWidget):
    """Segment objects by clicking; commit them into a Labels layer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (injected by napari).
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._own: weakref.WeakSet = weakref.WeakSet()
        self._layers: dict[int, dict[str, Any]] = {}
        self._generation = 0
        self._busy = False
        self._dirty = False
        self._pending_label = POSITIVE
        self._shown: tuple[tuple[int, ...], np.ndarray] | None = None
        self._undo: list[tuple[Labels, CommitRecord]] = []

        self.settings = ModelSettings()
        self.settings.model_changed.connect(self._on_model)
        self.image_picker = LayerPicker(napari_viewer, (Image,), exclude=self._is_own)
        self.target_picker = LayerPicker(napari_viewer, (Labels,), allow_none="(new Labels layer)", exclude=self._is_own)
        self.refine_box = QCheckBox("Refine clicks (RP-SAM2)")
        self.refine_box.setChecked(True)
        self.refine_box.setToolTip(f"Off: plain SAM2 on the same clicks, to compare. Key: {KEYS['toggle']}")
        self.precompute_box = QCheckBox("Embed other slices in the background")
        self.precompute_box.setChecked(True)
        self.block_label = QLabel("Shift block: –")

        self.commit_button = QPushButton(f"Commit ({KEYS['commit']})")
        self.commit_button.setToolTip(
            "Write the preview into the target Labels layer under the next free id.\n"
            "Only background pixels (0) are written: other objects are never overwritten."
        )
        self.clear_button = QPushButton(f"Clear ({KEYS['clear']})")
        self.clear_button.setToolTip("Remove the clicks of this slice and the preview")
        self.undo_button = QPushButton("Undo commit")
        self.undo_button.setToolTip("Set the pixels of the last commit back to 0 (pixels edited since are kept)")
        self.status = StatusLabel("Load a model, pick an image and click on an object.")
        self.embedder = BackgroundEmbedder(on_error=self.status.error)
        embedder = self.embedder
        cancel_when_destroyed(self, lambda: embedder._cancel)  # the viewer closed while slices are embedded

        self.commit_button.clicked.connect(self.commit)
        self.clear_button.clicked.connect(self.clear)
        self.undo_button.clicked.connect(self.undo)
        self.refine_box.toggled.connect(lambda _: self._schedule())
        self.image_picker.currentIndexChanged.connect(self._on_image)
        self._layout()

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._segment_now)
        napari_viewer.dims.events.current_step.connect(self._on_step)
        self._key_funcs = bind_keys(napari_viewer, {KEYS["commit"]: self.commit, KEYS["clear"]: self.clear,
                                                     KEYS["toggle"]: self.toggle_refine})
        self._on_image()

    # ------------------------------------------------------------------ layout
    def _layout(self) -> None:
        lay = QVBoxLayout(self)
        lay.addWidget(self.settings)
        form = QFormLayout()
        form.addRow("Image", self.image_picker)
        form.addRow("Commit into", self.target_picker)
        lay.addLayout(form)
        help_text = QLabel(
            f"<b>Click</b>: positive point (green) · <b>{NEGATIVE_MODIFIER}-click</b>: negative point (red), "
            f"on the clicks layer in add mode.<br>Keys: {KEYS['commit']} commit · {KEYS['clear']} clear · "
            f"{KEYS['toggle']} RP-SAM2 / SAM2."
        )
        help_text.setWordWrap(True)
        lay.addWidget(help_text)
        lay.addWidget(self.refine_box)
        lay.addWidget(self.block_label)
        row = QHBoxLayout()
        for b in (self.commit_button, self.clear_button, self.undo_button):
            row.addWidget(b)
        lay.addLayout(row)
        lay.addWidget(self.precompute_box)
        lay.addWidget(self.embedder)
        lay.addWidget(self.status)
        lay.addStretch(1)

    # ------------------------------------------------------------------ model
    @property
    def model(self) -> "RPSAM2 | None":
        """The loaded model, or ``None``."""
        return self.settings.model

    def set_model(self, model: "RPSAM2") -> None:
        """Use an existing model instead of loading one."""
        self.settings.set_model(model)

    def _on_model(self, model: "RPSAM2") -> None:
        self._update_block_label()
        self.start_precompute()
        self._schedule()

    def _update_block_label(self) -> None:
        if self.model is None:
            return
        identity = offset_is_identity(self.model.shift_block)
        self.block_label.setText("Shift block: untrained (identity) — RP-SAM2 equals SAM2" if identity
                                 else "Shift block: trained")

    def load_shift_block(self, path: str) -> bool:
        """Load a shift-block checkpoint into the current model; False (with a message) on failure."""
        if self.model is None:
            self.status.error("Load a model first, then the shift block.")
            return False
        try:
            self.model.load_shift_block(path)
        except Exception as err:  # CheckpointError and friends: show, do not crash
            self.status.error(f"Could not load the shift block: {error_text(err)}")
            return False
        self.settings.shift_block.setText(str(path))
        self.settings.refresh_summary()
        self._update_block_label()
        self.refine_box.setChecked(True)
        self.status.info(f"Shift block loaded from {path}.")
        self._schedule()
        return True

    # ------------------------------------------------------------------ layers
    def _is_own(self, layer: Any) -> bool:
        return layer in self._own

    def _add(self, layer: Any) -> Any:
        self._own.add(layer)
        self.viewer.add_layer(layer)
        return layer

    def layers(self, image: Image | None = None) -> dict[str, Any]:
        """The widget's prompts / refined / arrows / preview layers for ``image`` (created if missing)."""
        image = image or self.image_picker.layer()
        if image is None:
            raise SliceError("No image layer: open an image (or File ▸ Open Sample ▸ RP-SAM2).")
        found = self._layers.get(id(image))
        if found and found["image"] is image and all(found[k] in self.viewer.layers for k in ROLES):
            return found
        found = ensure_click_layers(self.viewer, image, found, self._add, self._setup_prompts)
        self._layers[id(image)] = found
        self.viewer.layers.selection.active = found["prompts"]
        return found

    def _setup_prompts(self, prompts: Points) -> None:
        prompts.events.data.connect(self._on_prompts_data)
        prompts.mouse_drag_callbacks.insert(0, self._on_press)

    def _on_image(self, *_: Any) -> None:
        image = self.image_picker.layer()
        self._generation += 1
        self._shown = None
        if image is not None:
            self.layers(image)
            self.start_precompute()
            self._schedule()

    def _on_press(self, layer: Points, event: Any) -> None:
        self._pending_label = NEGATIVE if NEGATIVE_MODIFIER in event.modifiers else POSITIVE

    def _on_prompts_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if action.endswith(("adding", "removing", "changing")):
            return
        layer = event.source
        if action.endswith("added") and self._pending_label == NEGATIVE:
            for i in getattr(event, "data_indices", ()):
                layer.features.loc[layer.features.index[i], "label"] = NEGATIVE
        self._pending_label = POSITIVE
        self.recolor(layer)
        self._schedule()

    def recolor(self, layer: Points) -> None:
        """Paint each click by its label (positive green, negative red)."""
        if len(layer.data):
            layer.face_color = np.array([COLORS.get(str(v), COLORS[POSITIVE]) for v in layer.features["label"]])

    # ------------------------------------------------------------------ slicing
    def current_slice(self) -> ImageSlice:
        """The displayed 2D slice of the chosen image."""
        return image_slice(self.viewer, self.image_picker.layer())

    def _on_step(self, *_: Any) -> None:
        image = self.image_picker.layer()
        if image is not None and image.ndim > 2:
            self._generation += 1
            self._schedule()

    # ------------------------------------------------------------------ segmentation
    def _schedule(self) -> None:
        self._timer.start()

    def _slice_and_layers(self) -> tuple[ImageSlice, dict] | None:
        """The slice on screen and the widget's layers for it; ``None`` (and a message) when unusable."""
        try:
            sl = self.current_slice()
            return sl, self.layers(sl.layer)
        except SliceError as err:
            self.status.error(str(err))
            return None

    def _segment_now(self) -> None:
        self._generation += 1
        found = self._slice_and_layers()
        if found is None:
            return
        sl, layers = found
        _, points, clicks = prompts_on_slice(layers["prompts"].data, layers["prompts"].features["label"], sl.index)
        if not (clicks == 1).any():
            self._show_result(layers, sl.index, None)
            if len(clicks):
                self.status.error("Only negative clicks on this slice: add a positive click on the object.")
            return
        if self.model is None:
            self.status.error("No model loaded: choose the SAM2 weights above and press Load model.")
            return
        if self._busy:
            self._dirty = True
            return
        self._busy = True
        gen, refine, model = self._generation, self.refine_box.isChecked(), self.model
        start_worker(model.segment, sl.plane, points, clicks, refine, rgb=sl.rgb, key=sl.key,
                     on_return=lambda res: self._segmented(gen, sl.index, refine, res),
                     on_error=lambda err: self._segment_failed(gen, err), on_finish=self._segment_done)

    def _segment_done(self) -> None:
        self._busy = False
        if self._dirty:
            self._dirty = False
            self._segment_now()

    def _segment_failed(self, gen: int, err: BaseException) -> None:
        if gen == self._generation:
            self.status.error(f"Segmentation failed: {error_text(err)}")

    def _segmented(self, gen: int, index: tuple[int, ...], refine: bool, res: "SegmentResult") -> None:
        if gen != self._generation:
            return  # stale: the clicks or the slice changed meanwhile
        try:
            layers = self.layers()
        except SliceError:
            return
        self._show_result(layers, index, res)
        pos = res.labels == 1
        shift = np.linalg.norm(res.points[pos] - res.clicks[pos], axis=1).mean()
        method = "RP-SAM2" if refine else "SAM2"
        self.status.info(f"{method}: mask of {int(res.mask.sum())} px, predicted IoU {res.score:.2f}, "
                         f"mean click shift {shift:.1f} px.")

    def _show_result(self, layers: dict[str, Any], index: tuple[int, ...], res: "SegmentResult | None") -> None:
        preview = layers["preview"]
        data = np.zeros(preview.data.shape, np.uint8)
        nd = preview.ndim
        if res is None:
            self._shown = None
            layers["refined"].data = np.zeros((0, nd))
            layers["arrows"].data = np.zeros((0, 2, nd))
        else:
            data[index] = res.mask
            self._shown = (index, res.mask)
            pos = res.labels == 1
            lead = np.broadcast_to(np.asarray(index, float), (int(pos.sum()), len(index)))
            layers["refined"].data = np.concatenate([lead, res.points[pos]], axis=1)
            layers["arrows"].data = vectors_from(res.clicks[pos], res.points[pos], index)
        preview.data = data

    def preview_mask(self) -> tuple[tuple[int, ...], np.ndarray] | None:
        """``(slice index, mask)`` of the preview on screen, or ``None``."""
        return self._shown

    @property
    def busy(self) -> bool:
        """Whether a segmentation is pending or running."""
        return self._busy or self._dirty or self._timer.isActive()

    def clear(self) -> None:
        """Remove the clicks of the current slice and the preview."""
        found = self._slice_and_layers()
        if found is None:
            return
        sl, layers = found
        prompts = layers["prompts"]
        rows, _, _ = prompts_on_slice(prompts.data, prompts.features["label"], sl.index)
        self._generation += 1
        if len(rows):
            prompts.selected_data = set(int(r) for r in rows)
            prompts.remove_selected()
        self._show_result(layers, sl.index, None)

    def toggle_refine(self) -> None:
        """Switch between RP-SAM2 and plain SAM2."""
        self.refine_box.toggle()

    # ------------------------------------------------------------------ background embeddings
    def start_precompute(self) -> None:
        """Embed the other slices of a stack in a worker (current slice first)."""
        self.embedder.cancel()
        image = self.image_picker.layer()
        if self.model is None or image is None or image.ndim != 3 or not self.precompute_box.isChecked():
            return
        try:
            sl = self.current_slice()
        except SliceError:
            return
        n = layer_shape(image)[0]
        order = [sl.index[0]] + [i for i in range(n) if i != sl.index[0]]
        self.embedder.start(self.model, image.data[0] if image.multiscale else image.data,
                            rgb=sl.rgb, key=sl.key[0], order=order)

    # ------------------------------------------------------------------ keys and closing
    def cleanup(self) -> None:
        """Unbind keys, stop jobs and stop following the viewer (called on close)."""
        self.embedder.cancel()
        self._timer.stop()
        unbind_keys(self.viewer, self._key_funcs)
        self._key_funcs = {}
        try:
            self.viewer.dims.events.current_step.disconnect(self._on_step)
        except Exception:  # already gone with the viewer
            pass
        self.image_picker.disconnect_viewer()
        self.target_picker.disconnect_viewer()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        self.cleanup()
        super().closeEvent(event)

    def event(self, event: Any) -> bool:
        """Clean up when napari takes the widget out of its dock (the dock's close button)."""
        if event.type() == QEvent.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif getattr(self, "_docked", False):
                self._docked = False
                self.cleanup()
        return super().event(event)
