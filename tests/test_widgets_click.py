"""Click widget in a real napari viewer (under Xvfb): clicks, preview, commit / undo."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_rpsam2._widgets._logic import NEGATIVE, CommitError, plan_commit, plan_undo  # noqa: E402
from napari_rpsam2.sample_data import make_instrument_stack  # noqa: E402

WIDGET = "Click segmentation (RP-SAM2)"


def _open(make_napari_viewer, model, image, **kwargs):
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="my picture", **kwargs)
    _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    widget.set_model(model)
    widget.image_picker.set_layer(layer)
    return viewer, widget


def _wait_idle(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def test_commit_plan_never_overwrites():
    target = np.zeros((2, 5, 5), np.int32)
    target[1, 0, :] = 7
    mask = np.zeros((5, 5), bool)
    mask[0:2, :] = True
    rec = plan_commit(target, (1,), mask)
    assert rec.label_id == 8 and rec.size == 5  # row 0 belongs to object 7
    target[rec.indices] = rec.label_id
    target[1, 1, 0] = 3  # the user paints over one committed pixel
    undo = plan_undo(target, rec)
    target[undo] = 0
    assert (target[1, 0] == 7).all() and target[1, 1, 0] == 3 and (target[1, 1, 1:] == 0).all()
    with pytest.raises(CommitError, match="empty"):
        plan_commit(target, (0,), np.zeros((5, 5), bool))


def test_clicks_preview_commit_undo(make_napari_viewer, qtbot, model):
    image, _ = make_instrument_stack(1)
    viewer, widget = _open(make_napari_viewer, model, image[0], rgb=True)
    widget.precompute_box.setChecked(False)
    layers = widget.layers()
    prompts, preview = layers["prompts"], layers["preview"]
    assert prompts in viewer.layers and preview.data.shape == image.shape[1:3]

    prompts.data = np.array([[170.0, 80.0]])  # a click on the forceps shaft
    qtbot.waitUntil(lambda: widget.preview_mask() is not None, timeout=60_000)
    _wait_idle(qtbot, widget)
    assert preview.data.any()
    assert layers["refined"].data.shape == (1, 2)
    assert layers["arrows"].data.shape == (1, 2, 2)

    # a target that already holds a user's object: it must survive commit and undo
    existing = np.zeros(image.shape[1:3], np.int32)
    existing[:40, :40] = 5
    existing[preview.data.astype(bool)] = 0
    existing[np.argwhere(preview.data)[0][0], np.argwhere(preview.data)[0][1]] = 5
    target = viewer.add_labels(existing.copy(), name="renamed by user")
    widget.target_picker.set_layer(target)
    before = np.asarray(target.data).copy()
    n_preview = int(preview.data.astype(bool).sum())
    widget.commit()
    after = np.asarray(target.data)
    assert (after[before != 0] == before[before != 0]).all()  # earlier labels intact
    assert (after == 6).sum() == n_preview - 1
    assert len(prompts.data) == 0 and not preview.data.any()
    widget.undo()
    np.testing.assert_array_equal(np.asarray(target.data), before)


def test_negative_click_toggle_and_stack_slices(make_napari_viewer, qtbot, model):
    image, _ = make_instrument_stack(2)
    viewer, widget = _open(make_napari_viewer, model, image, rgb=True)
    layers = widget.layers()
    prompts = layers["prompts"]
    assert prompts.ndim == 3
    # precompute runs in the background with a progress bar
    assert widget.embedder.running and not widget.embedder.isHidden()
    qtbot.waitUntil(lambda: not widget.embedder.running, timeout=120_000)

    viewer.dims.set_current_step(0, 1)
    prompts.data = np.array([[1.0, 170.0, 80.0]])

    class Press:  # what napari passes to mouse callbacks, as far as the widget looks
        modifiers = ("Shift",)

    widget._on_press(prompts, Press())  # Shift-click, then napari's add mode adds the point
    prompts.add([1.0, 20.0, 20.0])
    assert list(prompts.features["label"]) == ["positive", NEGATIVE]
    assert not np.allclose(prompts.face_color[0], prompts.face_color[1])
    widget.refine_box.setChecked(False)  # plain SAM2: refined == clicks
    qtbot.waitUntil(lambda: widget.preview_mask() is not None, timeout=60_000)
    _wait_idle(qtbot, widget)
    index, mask = widget.preview_mask()
    assert index == (1,) and mask.any()
    np.testing.assert_allclose(layers["refined"].data, [[1.0, 170.0, 80.0]])  # only the positive click

    viewer.dims.set_current_step(0, 0)  # slice 0 has no clicks: preview empties, slice 1 keeps its clicks
    qtbot.waitUntil(lambda: widget.preview_mask() is None and not widget.busy, timeout=60_000)
    assert len(prompts.data) == 2
    viewer.dims.set_current_step(0, 1)
    qtbot.waitUntil(lambda: widget.preview_mask() is not None, timeout=60_000)


def test_messages_without_model_or_image(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    widget.commit()
    assert "Nothing to commit" in widget.status.text()
    widget.clear()
    assert "No image layer" in widget.status.text()
    viewer.add_image(np.zeros((64, 64), np.float32))
    widget.layers()["prompts"].data = np.array([[10.0, 10.0]])
    qtbot.waitUntil(lambda: "No model loaded" in widget.status.text(), timeout=5_000)
    # missing weights: a clear message in the widget, no crash
    widget.settings.weights.setText("/nonexistent/sam2.pt")
    widget.settings.load()
    qtbot.waitUntil(lambda: "Could not load the model" in widget.settings.status.text(), timeout=30_000)
    assert "does not exist" in widget.settings.status.text()
    keys = {str(k) for k in viewer.keymap}
    assert "Shift+C" in keys or "Shift-C" in keys
    viewer.window.remove_dock_widget(widget)  # what the dock's close button does
    keys = {str(k) for k in viewer.keymap}
    assert "Shift+C" not in keys and "Shift-C" not in keys
