"""Click segmentation dock: a view over the image's :class:`~napari_rpsam2.app.ClickSession`.

The session (clicks per slice, preview, undo stack, target) lives in the
viewer's workspace, so closing and reopening the dock keeps it; the dock
mirrors it into napari layers and feeds canvas clicks, keys and buttons into it.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from napari.layers import Image, Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..app.click_session import ClickSession, Preview
from ..model.shift_block import offset_is_identity
from ._click_box import BoxInput
from ._click_input import NEGATIVE_MODIFIER, ClickInput
from ._click_layers import ClickLayers
from ._commit import commit_target
from ._embedder import BackgroundEmbedder
from ._keys import bind_keys, unbind_keys
from ._label_history import REGISTRY, describe_undo, history_for
from ._layer_picker import LayerPicker
from ._logic import outward_order
from ._model_settings import ModelSettings
from ._slicing import NO_IMAGE_MESSAGE, ImageSlice, SliceError, full_resolution, image_slice, layer_shape
from ._views import DOCK_MAX_WIDTH, DockView, StatusLabel, scrolling_dock
from ._workers import cancel_when_destroyed, error_text, start_worker
from ._workfolder import WorkFolderPanel
from ._workspace import unwrap, workspace_for

if TYPE_CHECKING:
    import napari

    from ..model import RPSAM2

__all__ = ["ClickWidget", "KEYS", "DEBOUNCE_MS", "MAX_WIDTH"]

KEYS = {"commit": "Shift-C", "clear": "Shift-X", "toggle": "Shift-R"}
"""Viewer key bindings while the dock is open."""
DEBOUNCE_MS = 120
"""Clicks within this interval are segmented together."""
MAX_WIDTH = DOCK_MAX_WIDTH


class ClickWidget(DockView):
    """Segment objects by clicking; commit them into a Labels layer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (injected by napari, possibly as its public-only proxy).
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)  # layers made here must be the ones the pickers list
        self.workspace = workspace_for(self.viewer)
        self.session: ClickSession | None = None
        self._layers: ClickLayers | None = None
        self._input: ClickInput | None = None
        self._box: BoxInput | None = None
        self._busy = self._dirty = False
        self.settings = ModelSettings(self.workspace)
        self.image_picker = LayerPicker(self.viewer, (Image,))
        self.target_picker = LayerPicker(self.viewer, (Labels,), allow_none="(new Labels layer)")
        self.refine_box = QCheckBox("Refine clicks (RP-SAM2)")
        self.refine_box.setChecked(True)
        self.refine_box.setToolTip(f"Off: plain SAM2 on the same clicks, to compare. Key: {KEYS['toggle']}")
        self.precompute_box = QCheckBox("Embed other slices in the background")
        self.precompute_box.setChecked(self.workspace.background_embedding)
        self.block_label = QLabel("Shift block: –")
        self.block_label.setWordWrap(True)  # a long line would widen the dock past the screen
        self.box_button = QPushButton("Draw box")
        self.box_button.setToolTip("Drag a rectangle around the object on this slice; SAM2 takes it with the clicks.\n"
                                   "One box per slice: a new one replaces it. Clear (Shift-X) removes it.")
        self.commit_button = QPushButton(f"Commit ({KEYS['commit']})")
        self.commit_button.setToolTip("Write the preview into the target Labels layer under the next free id.\n"
                                      "Only background pixels (0) are written: other objects are never overwritten.")
        self.clear_button = QPushButton(f"Clear ({KEYS['clear']})")
        self.clear_button.setToolTip("Remove the clicks of this slice and the preview")
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the latest change to the Labels layer committed into (a commit sets "
                                    "its pixels back to 0;\npixels edited since are kept). Ctrl-Z on the layer "
                                    "does the same.")
        self.status = StatusLabel("Load a model, pick an image and click on an object.")
        self.workfolder = WorkFolderPanel(self.viewer, self._report, target=self.target_picker.layer)
        self.embedder = BackgroundEmbedder(on_error=self.status.error)
        embedder = self.embedder
        cancel_when_destroyed(self, lambda: embedder._cancel)  # the viewer closed while slices are embedded
        self._layout()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._segment_now)
        self._mapping_timer = QTimer(self)  # a contrast slider sends many events: re-embed once it rests
        self._mapping_timer.setSingleShot(True)
        self._mapping_timer.setInterval(4 * DEBOUNCE_MS)
        self._mapping_timer.timeout.connect(self.start_precompute)
        self._connect()
        self._on_image()

    def _connect(self) -> None:
        self.box_button.clicked.connect(self.draw_box)
        self.commit_button.clicked.connect(self.commit)
        self.clear_button.clicked.connect(self.clear)
        self.undo_button.clicked.connect(self.undo)
        self.refine_box.toggled.connect(self._on_refine_box)
        self.image_picker.currentIndexChanged.connect(self._on_image)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.workspace.events.model_changed.connect(self._on_model)
        self.workspace.events.shift_block_changed.connect(self._on_model)
        REGISTRY.changed.connect(self._show_undo)
        self.target_picker.currentIndexChanged.connect(self._show_undo)
        self._key_funcs = bind_keys(self.viewer, {KEYS["commit"]: self.commit, KEYS["clear"]: self.clear,
                                                  KEYS["toggle"]: self.toggle_refine})
        if self.workspace.model is not None:
            self._update_block_label()

    def _layout(self) -> None:
        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.addWidget(self.settings)
        form = QFormLayout()
        form.addRow("Image", self.image_picker)
        form.addRow("Commit into", self.target_picker)
        lay.addLayout(form)
        lay.addWidget(self.workfolder)
        help_text = QLabel(f"<b>Click</b> on the image: object (green) · <b>{NEGATIVE_MODIFIER}-click</b>: "
                           f"background (red). Keys: {KEYS['commit']} commit · {KEYS['clear']} clear · "
                           f"{KEYS['toggle']} RP-SAM2 / SAM2. Delete a click: select it on the clicks layer, "
                           "press Delete. <b>Draw box</b>: a rectangle around the object, with or without clicks.")
        help_text.setWordWrap(True)
        lay.addWidget(help_text)
        lay.addWidget(self.refine_box)
        lay.addWidget(self.block_label)
        for buttons in ((self.box_button,), (self.commit_button, self.clear_button, self.undo_button)):
            row = QHBoxLayout()
            for b in buttons:
                row.addWidget(b)
            lay.addLayout(row)
        lay.addWidget(self.precompute_box)
        lay.addWidget(self.embedder)
        lay.addWidget(self.status)
        lay.addStretch(1)
        scrolling_dock(self, inner)  # narrow dock: the text wraps instead of scrolling sideways

    # ------------------------------------------------------------------ model
    @property
    def model(self) -> "RPSAM2 | None":
        """The viewer's model (shared by every dock), or ``None``."""
        return self.workspace.model

    def set_model(self, model: "RPSAM2") -> None:
        """Give the viewer's workspace a model built elsewhere (a script, a test); every dock uses it."""
        self.workspace.set_model(model)

    def load_shift_block(self, path: str) -> bool:
        """Load a shift-block checkpoint into the viewer's model; False (with a message) on failure."""
        try:
            self.workspace.load_shift_block(path)  # shift_block_changed updates this dock
        except Exception as err:  # NoModelError, CheckpointError...: show, do not crash
            self.status.error(f"Could not load the shift block: {error_text(err)}")
            return False
        self.settings.shift_block.setText(str(path))
        self.refine_box.setChecked(True)
        self.status.info(f"Shift block loaded from {path}.")
        return True

    def _on_model(self, *_: Any) -> None:
        self.settings.show_model()
        self._update_block_label()
        if self.session is not None:
            self.session.invalidate()
        self.start_precompute()
        self._schedule()

    def _update_block_label(self) -> None:
        if self.model is not None:
            identity = offset_is_identity(self.model.shift_block)
            self.block_label.setText("Shift block: untrained (identity) — RP-SAM2 equals SAM2" if identity
                                     else "Shift block: trained")

    # ------------------------------------------------------------------ image, session, layers
    def _on_image(self, *_: Any) -> None:
        self._detach(drop_unused=True)
        image = self.image_picker.layer()
        if image is None:
            return
        sessions = self.workspace.click_sessions
        session = sessions.get(image.unique_id)
        if session is None or session.shape != layer_shape(image):
            session = sessions[image.unique_id] = ClickSession(layer_shape(image))
        session.refine = self.refine_box.isChecked()
        viewer = weakref.ref(self.viewer)  # the session outlives this dock: no strong link back to it
        session.target_alive = lambda target: (v := viewer()) is not None and target in v.layers
        session.history_of = lambda target: None if (v := viewer()) is None else history_for(v, target)
        self.session = session
        self._layers = ClickLayers(self.viewer, image)
        self._input = ClickInput(self._layers, session, self._current_index, self.status.error)
        self._box = BoxInput(self.viewer, image, session, self._layers.activate, self.status.error)
        for sig, slot in self._session_slots():
            sig.connect(slot)
        image.events.contrast_limits.connect(self._on_mapping)
        image.events.gamma.connect(self._on_mapping)
        restored = self.workfolder.attach(image)  # saved labels and prompts come back
        if restored is not None:
            self.target_picker.set_layer(restored)
        self._layers.show_clicks(session)
        self._layers.show_preview(session.preview)
        self._layers.activate()
        self.start_precompute()
        self._schedule()

    def _detach(self, drop_unused: bool = False) -> None:
        """Stop listening to the current image's session and layers.

        With ``drop_unused`` (another image picked) the layers go when the
        person did not work on that image (no clicks, no preview): an image
        only passed over in the picker keeps no plugin layers.
        """
        layers, session = self._layers, self.session
        for view in (self._input, self._box):
            if view is not None:
                view.disconnect()
        if self.session is not None:
            for sig, slot in self._session_slots():
                sig.disconnect(slot)
        if self._layers is not None:
            self._layers.image.events.contrast_limits.disconnect(self._on_mapping)
            self._layers.image.events.gamma.disconnect(self._on_mapping)
        self.session, self._layers, self._input, self._box = None, None, None, None
        if drop_unused and layers is not None and session is not None and not session.slices() \
                and session.preview is None:
            for layer in layers.layers.values():
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)

    def _session_slots(self) -> list[tuple[Any, Any]]:
        ev = self.session.events
        return [(ev.message, self._on_message), (ev.preview_changed, self._on_preview),
                (ev.clicks_changed, self._on_clicks), (ev.box_changed, self._on_clicks),
                (ev.refine_changed, self._on_clicks)]

    def layers(self) -> dict[str, Any]:
        """The dock's layers of the chosen image by role (``prompts``, ``refined``, ``arrows``, ``preview``)."""
        if self._layers is None:
            raise SliceError(NO_IMAGE_MESSAGE)
        if not self._layers.alive() and self._layers.ensure():  # the person deleted one: make it again
            self._input.disconnect()
            self._input = ClickInput(self._layers, self.session, self._current_index, self.status.error)
            self._layers.show_clicks(self.session)
            self._layers.show_preview(self.session.preview)
            self._layers.activate()
        return dict(self._layers.layers)

    def current_slice(self) -> ImageSlice:
        """The displayed 2D slice of the chosen image."""
        return image_slice(self.viewer, self.image_picker.layer())

    def _current_index(self) -> tuple[int, ...]:
        self.layers()  # the person may have deleted one of the dock's layers
        return self.current_slice().index

    def _on_message(self, level: str, text: str) -> None:
        (self.status.error if level == "error" else self.status.info)(text)

    def _report(self, text: str, level: str = "error") -> None:
        self._on_message(level, text)

    def _on_preview(self, preview: Preview | None) -> None:
        if self._layers is not None:
            self._layers.show_preview(preview)

    def _on_clicks(self, *_: Any) -> None:
        self._schedule()

    def _on_mapping(self, *_: Any) -> None:
        """Contrast limits or gamma changed: segment again, and embed the slices again once the slider rests."""
        if self.session is not None:
            self.session.invalidate()
        self._mapping_timer.start()
        self._schedule()

    def _on_layer_removed(self, event: Any) -> None:
        """An image layer was deleted: its clicks and undo records go with it."""
        self.workspace.click_sessions.pop(getattr(event.value, "unique_id", None), None)

    def _on_step(self, *_: Any) -> None:
        image = self.image_picker.layer()
        if image is not None and image.ndim > 2 and self.session is not None:
            self.session.invalidate()
            self._schedule()

    def _on_refine_box(self, on: bool) -> None:
        if self.session is not None:
            self.session.refine = on

    # ------------------------------------------------------------------ segmentation
    def _schedule(self) -> None:
        self._timer.start()

    @property
    def busy(self) -> bool:
        """Whether a segmentation is pending or running."""
        return self._busy or self._dirty or self._timer.isActive()

    def _segment_now(self) -> None:
        if self.session is None:
            return
        try:
            sl = self.current_slice()
            self.layers()
        except SliceError as err:
            self.status.error(str(err))
            return
        request = self.session.request(sl.index)
        if request is None:
            return
        model = self.model
        if model is None:
            self.status.error("No model loaded: choose the SAM2 weights above and press Load model "
                              "('random' works offline).")
            return
        if self._busy:
            self._dirty = True
            return
        self._busy = True
        session, layer = self.session, sl.layer
        start_worker(model.segment, sl.plane, request.points, request.labels, request.refine, rgb=sl.rgb,
                     key=sl.key, box=request.box, contrast_limits=layer.contrast_limits, gamma=layer.gamma,
                     on_return=lambda res: session.accept(request, res),
                     on_error=lambda err: session.reject(request, error_text(err)), on_finish=self._segment_done)

    def _segment_done(self) -> None:
        self._busy = False
        if self._dirty:
            self._dirty = False
            self._segment_now()

    def preview_mask(self) -> tuple[tuple[int, ...], Any] | None:
        """``(slice index, mask)`` of the preview on screen, or ``None``."""
        preview = None if self.session is None else self.session.preview
        return None if preview is None else (preview.index, preview.mask)

    # ------------------------------------------------------------------ actions
    def commit(self) -> None:
        """Write the preview into the target Labels layer under the next free id."""
        if self.session is None:
            self.status.error(NO_IMAGE_MESSAGE)
            return
        if self.busy:
            self.status.error("Still segmenting the latest clicks; commit again in a moment.")
            return
        preview = self.session.preview
        box = None if preview is None else self.session.box(preview.index)
        if preview is not None:
            self.session.target = commit_target(self.viewer, self.target_picker, self._layers.image,
                                                below=self._layers.preview)
        record = self.session.commit()
        target = self.session.target
        if record is not None:  # saved when saving is on, with its undos and redos (a button or Ctrl-Z)
            self.workfolder.committed(record, preview, box, target, self.model,
                                      step=history_for(self.viewer, target).latest)
        self._layers.activate()  # a new Labels layer took the focus: the next canvas click must still count

    def undo(self) -> None:
        """Undo the latest change to the Labels layer committed into: the last commit, or anything written since.

        One history per Labels layer, the same as Ctrl-Z on it: a commit's
        pixels that still hold its id go back to 0 (the work folder records
        the undo); a propagation, a one-shot run or a brush stroke made after
        it is undone first.
        """
        if self.session is None:
            self.status.error(NO_IMAGE_MESSAGE)
            return
        if self.session.target is None:  # nothing committed in this viewer yet: the layer picked
            self.session.target = self.target_picker.layer()
        self.session.undo()

    def _show_undo(self, *_: Any) -> None:
        try:
            layer = self.target_picker.layer() if self.session is None or self.session.target is None \
                else self.session.target
            self.undo_button.setToolTip(describe_undo(layer))
        except RuntimeError:  # the dock is gone
            REGISTRY.changed.disconnect(self._show_undo)

    def clear(self) -> None:
        """Remove the clicks of the current slice and the preview."""
        try:
            index = self.current_slice().index
        except SliceError as err:
            self.status.error(str(err))
            return
        if self.session is not None:
            self.session.clear(index)

    def draw_box(self) -> None:
        """Select the image's box layer in rectangle mode: the next drag on the canvas draws the box."""
        if self._box is None:
            self.status.error(NO_IMAGE_MESSAGE)
            return
        self._box.start_drawing()
        self.status.info("Drag a rectangle around the object on this slice (a new one replaces the old).")

    def toggle_refine(self) -> None:
        """Switch between RP-SAM2 and plain SAM2."""
        self.refine_box.toggle()

    # ------------------------------------------------------------------ background embeddings
    def start_precompute(self) -> None:
        """Embed the slices around the one on screen in a worker, nearest first, up to the cache budget."""
        self.embedder.cancel()
        image = self.image_picker.layer()
        if self.model is None or image is None or image.ndim != 3 or not self.precompute_box.isChecked():
            return
        try:
            sl = self.current_slice()
        except SliceError:
            return
        order = outward_order(sl.index[0], layer_shape(image)[0])
        self.embedder.start(self.model, full_resolution(image), rgb=sl.rgb,
                            key=sl.key[0], order=order, contrast_limits=image.contrast_limits, gamma=image.gamma)

    # ------------------------------------------------------------------ closing
    def cleanup(self) -> None:
        """Unbind keys, stop jobs and stop following the viewer (the session and layers stay)."""
        self.embedder.cancel()
        self._timer.stop()
        self._mapping_timer.stop()
        unbind_keys(self.viewer, self._key_funcs)
        REGISTRY.changed.disconnect(self._show_undo)
        self._key_funcs = {}
        self._detach()
        for sig, slot in ((self.viewer.dims.events.current_step, self._on_step),
                          (self.viewer.layers.events.removed, self._on_layer_removed),
                          (self.workspace.events.model_changed, self._on_model),
                          (self.workspace.events.shift_block_changed, self._on_model)):
            try:
                sig.disconnect(slot)
            except Exception:  # already gone with the viewer
                pass
        self.image_picker.disconnect_viewer()
        self.target_picker.disconnect_viewer()
