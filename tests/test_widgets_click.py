"""Click dock in a real napari viewer, driven by canvas clicks, keys and buttons (under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtWidgets import QLabel  # noqa: E402

from gui_input import click_button, click_canvas, press_key  # noqa: E402
from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402
from napari_rpsam2.sample_data import make_instrument_stack  # noqa: E402

WIDGET = "Click segmentation"
SHIFT = Qt.KeyboardModifier.ShiftModifier


def _open(qtbot, make_napari_viewer, model, image, **kwargs):
    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(image, name="my picture", **kwargs)
    if model is not None:
        workspace_for(viewer).set_model(RPSAM2(model.backbone))
    _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    viewer.window._qt_window.resize(1280, 800)
    qtbot.wait(10)
    viewer.reset_view()
    return viewer, widget, layer


def _wait_mask(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy and "mask of" in widget.status.text(), timeout=60_000)


@pytest.mark.background_embedding
def test_stack_slices_background_embedding_toggle_and_arrows(make_napari_viewer, qtbot, model):
    image, _ = make_instrument_stack(2)
    viewer, widget, layer = _open(qtbot, make_napari_viewer, model, image, rgb=True)
    layers = widget.layers()
    assert widget.embedder.running and not widget.embedder.isHidden()  # other slices embed with progress
    qtbot.waitUntil(lambda: not widget.embedder.running, timeout=120_000)
    viewer.dims.set_current_step(0, 1)
    click_canvas(qtbot, viewer, layers["prompts"], (170.0, 80.0))
    click_canvas(qtbot, viewer, layers["prompts"], (20.0, 20.0), SHIFT)
    np.testing.assert_allclose(layers["prompts"].data[:, 0], [1, 1])  # both on slice 1
    assert not np.allclose(layers["prompts"].face_color[0], layers["prompts"].face_color[1])
    _wait_mask(qtbot, widget)
    assert layers["refined"].data.shape == (1, 3) and layers["arrows"].data.shape == (1, 2, 3)
    assert "RP-SAM2" in widget.status.text()
    press_key(qtbot, viewer, "R", SHIFT)  # plain SAM2: refined points are the clicks
    assert not widget.refine_box.isChecked()
    _wait_mask(qtbot, widget)
    assert widget.status.text().startswith("SAM2")
    np.testing.assert_allclose(layers["refined"].data[0, 1:], layers["prompts"].data[0, 1:], atol=1e-4)
    index, mask = widget.preview_mask()
    preview = layers["preview"]
    assert preview.data.shape == (1, *mask.shape)  # one plane, whatever the stack's length
    assert index == (1,) and np.array_equal(np.asarray(preview.data[0]) > 0, mask)
    assert preview.translate[0] == 1  # drawn on slice 1 only
    assert preview.world_to_data([1, 0, 0])[0] == 0 and preview.world_to_data([0, 0, 0])[0] == -1
    viewer.dims.set_current_step(0, 0)  # slice 0 has no clicks: no preview; slice 1 keeps its clicks
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.preview_mask() is None and not np.asarray(layers["preview"].data).any()
    viewer.dims.set_current_step(0, 1)
    _wait_mask(qtbot, widget)
    assert len(layers["prompts"].data) == 2


def test_commit_undo_restore_exactly_and_contrast_reaches_sam2(make_napari_viewer, qtbot, model):
    image, _ = make_instrument_stack(1)
    viewer, widget, layer = _open(qtbot, make_napari_viewer, model, image[0].mean(-1).astype(np.uint8))
    existing = np.zeros(image.shape[1:3], np.int32)
    existing[:40, :40] = 5
    target = viewer.add_labels(existing.copy(), name="renamed by user")
    widget.target_picker.set_layer(target)
    widget.layers()["prompts"].visible = True
    viewer.layers.selection.active = widget.layers()["prompts"]
    layer.contrast_limits = (20.0, 120.0)  # the person narrows the contrast
    click_canvas(qtbot, viewer, widget.layers()["prompts"], (170.0, 80.0))
    _wait_mask(qtbot, widget)
    plane, click = np.asarray(layer.data), widget.layers()["prompts"].data
    expected = widget.model.segment(plane, click, [1], True, contrast_limits=(20.0, 120.0)).mask
    assert not np.array_equal(expected, widget.model.segment(plane, click, [1], True).mask)  # the mapping matters
    _, mask = widget.preview_mask()
    np.testing.assert_array_equal(mask, expected)  # SAM2 sees the image as shown
    before = np.asarray(target.data).copy()
    click_button(qtbot, widget.commit_button)
    after = np.asarray(target.data)
    assert (after[before != 0] == before[before != 0]).all()  # earlier labels intact
    assert (after == 6).sum() == (expected & (before == 0)).sum()
    assert len(widget.layers()["prompts"].data) == 0 and not np.asarray(widget.layers()["preview"].data).any()
    click_button(qtbot, widget.undo_button)
    np.testing.assert_array_equal(np.asarray(target.data), before)


def test_messages_without_model_and_keys_unbound_on_close(make_napari_viewer, qtbot):
    viewer, widget, layer = _open(qtbot, make_napari_viewer, None, np.zeros((64, 64), np.float32))
    click_button(qtbot, widget.commit_button)
    assert "Nothing to commit" in widget.status.text()
    click_canvas(qtbot, viewer, widget.layers()["prompts"], (10.0, 10.0))
    qtbot.waitUntil(lambda: "No model loaded" in widget.status.text(), timeout=5_000)
    widget.settings.weights.setText("/nonexistent/sam2.pt")  # missing weights: a clear message, no crash
    click_button(qtbot, widget.settings.load_button)
    qtbot.waitUntil(lambda: "Could not load the model" in widget.settings.status.text(), timeout=30_000)
    assert "does not exist" in widget.settings.status.text()
    keys = {str(k) for k in viewer.keymap}
    assert "Shift+C" in keys or "Shift-C" in keys
    viewer.window.remove_dock_widget(widget)  # what the dock's close button does
    keys = {str(k) for k in viewer.keymap}
    assert "Shift+C" not in keys and "Shift-C" not in keys


def test_dock_follows_the_viewers_model_and_fits_a_small_screen(make_napari_viewer, qtbot, model, moving_model):
    from napari_rpsam2._widgets.click_widget import MAX_WIDTH

    viewer, widget, _ = _open(qtbot, make_napari_viewer, None, np.zeros((64, 64), np.float32))
    assert viewer.window._qt_window.width() <= 1280 and widget.width() <= MAX_WIDTH
    workspace = workspace_for(viewer)
    workspace.set_model(RPSAM2(model.backbone))  # e.g. loaded by another dock
    assert "Loaded sam2.1_hiera_tiny" in widget.settings.status.text() and "random" in widget.settings.status.text()
    assert "untrained" in widget.block_label.text()
    cut = [w.text() for w in widget.findChildren(QLabel)
           if w.isVisible() and w.mapTo(widget, w.rect().topRight()).x() > widget.width()]
    assert not cut, f"labels cut off at the dock's right edge: {cut}"
    assert widget.minimumSizeHint().width() <= MAX_WIDTH, "a line that does not wrap widens the dock"
    workspace.use_shift_block(moving_model.shift_block)  # the training dock's "use the trained block"
    assert widget.block_label.text() == "Shift block: trained"
