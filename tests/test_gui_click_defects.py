"""The click dock driven as a person drives it: mouse presses on the canvas, key presses, button clicks.

Each test here reproduces one defect of issue 8 seen with real input (they failed on the code before it).
Scene set-up (opening an image, giving the viewer a random-weights model) is done directly.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari.layers import Labels  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from gui_input import click_button, click_canvas, press_key  # noqa: E402
from gui_scenes import clicks_layer, inside  # noqa: E402
from gui_scenes import open_click_dock as open_dock  # noqa: E402
from napari_rpsam2.sample_data import make_instrument_stack  # noqa: E402

WIDGET = "Click segmentation"
SHIFT = Qt.KeyboardModifier.ShiftModifier


@pytest.fixture(scope="module")
def frame():
    image, labels = make_instrument_stack(1)
    return image[0], labels[0]


def polarities(viewer):
    return [str(v) for v in clicks_layer(viewer).features["label"]]


def user_labels(viewer, widget):
    """Labels layers the person can commit into (the target picker's list, not the plugin's preview)."""
    return [ly for ly in viewer.layers if isinstance(ly, Labels) and "preview" not in ly.name]


def wait_mask(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.busy and "mask of" in widget.status.text(), timeout=timeout)


def test_shift_click_does_not_make_later_clicks_negative(make_napari_viewer, qtbot, model, frame):
    image, labels = frame
    viewer, widget = open_dock(qtbot, make_napari_viewer, model, image, rgb=True)
    obj1, obj2 = inside(labels, 1), inside(labels, 2)
    click_canvas(qtbot, viewer, clicks_layer(viewer), obj1)
    click_canvas(qtbot, viewer, clicks_layer(viewer), (20.0, 20.0), SHIFT)
    click_canvas(qtbot, viewer, clicks_layer(viewer), (obj1[0] - 6, obj1[1]))
    assert polarities(viewer) == ["positive", "negative", "positive"]
    wait_mask(qtbot, widget)
    press_key(qtbot, viewer, "C", SHIFT)  # commit
    assert len(clicks_layer(viewer).data) == 0
    click_canvas(qtbot, viewer, clicks_layer(viewer), obj2)  # the next object's first click
    assert polarities(viewer) == ["positive"]
    wait_mask(qtbot, widget)
    press_key(qtbot, viewer, "X", SHIFT)  # clear, then a plain click is still positive
    click_canvas(qtbot, viewer, clicks_layer(viewer), obj2)
    assert polarities(viewer) == ["positive"]


def test_commit_into_new_layer_adopts_it_and_clicks_keep_working(make_napari_viewer, qtbot, model, frame):
    image, labels = frame
    viewer, widget = open_dock(qtbot, make_napari_viewer, model, image, rgb=True)
    assert user_labels(viewer, widget) == []
    click_canvas(qtbot, viewer, clicks_layer(viewer), inside(labels, 1))
    wait_mask(qtbot, widget)
    click_button(qtbot, widget.commit_button)
    (target,) = user_labels(viewer, widget)
    assert set(np.unique(target.data)) == {0, 1}
    # defect 3: the new Labels layer does not swallow the next canvas click
    click_canvas(qtbot, viewer, clicks_layer(viewer), inside(labels, 2))
    assert len(clicks_layer(viewer).data) == 1
    wait_mask(qtbot, widget)
    click_button(qtbot, widget.commit_button)
    # defect 2: the second commit goes into the same layer, as object 2
    assert user_labels(viewer, widget) == [target]
    assert set(np.unique(target.data)) == {0, 1, 2}


def test_click_outside_the_image_is_refused(make_napari_viewer, qtbot, model, frame):
    image, labels = frame
    viewer, widget = open_dock(qtbot, make_napari_viewer, model, image, rgb=True)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom *= 0.6  # black margin all around the image
    click_canvas(qtbot, viewer, clicks_layer(viewer), inside(labels, 1))
    wait_mask(qtbot, widget)
    click_canvas(qtbot, viewer, clicks_layer(viewer), (-40.0, 100.0))
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert len(clicks_layer(viewer).data) == 1  # the margin click is not kept
    assert "outside" in widget.status.text()
    click_button(qtbot, widget.commit_button)  # the preview made before the refused click is gone
    assert all(not np.asarray(ly.data).any() for ly in user_labels(viewer, widget))
    click_canvas(qtbot, viewer, clicks_layer(viewer), inside(labels, 2))  # and the next click works
    wait_mask(qtbot, widget)


def test_reopened_dock_reuses_layers_clicks_and_model(make_napari_viewer, qtbot, model, frame):
    image, labels = frame
    viewer, widget = open_dock(qtbot, make_napari_viewer, model, image, rgb=True)
    obj1 = inside(labels, 1)
    click_canvas(qtbot, viewer, clicks_layer(viewer), obj1)
    wait_mask(qtbot, widget)
    names = [ly.name for ly in viewer.layers]
    viewer.window.remove_dock_widget(widget)  # what the dock's close button does
    _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    assert [ly.name for ly in viewer.layers] == names  # no duplicated layers
    plugin_layers = [n for n in names if n != "frame"]
    for picker in (widget.image_picker, widget.target_picker):
        listed = [picker.itemText(i) for i in range(picker.count())]
        assert not set(listed) & set(plugin_layers), listed  # pickers list only the person's layers
    click_canvas(qtbot, viewer, clicks_layer(viewer), (obj1[0] + 5, obj1[1]))
    assert polarities(viewer) == ["positive", "positive"]  # the old click is still part of the object
    wait_mask(qtbot, widget)  # the model is remembered
    assert [ly.name for ly in viewer.layers] == names


def test_deleting_all_clicks_clears_the_mask_text(make_napari_viewer, qtbot, model, frame):
    image, labels = frame
    viewer, widget = open_dock(qtbot, make_napari_viewer, model, image, rgb=True)
    obj1 = inside(labels, 1)
    layer = clicks_layer(viewer)
    click_canvas(qtbot, viewer, layer, obj1)
    wait_mask(qtbot, widget)
    controls = viewer.window._qt_viewer.controls.widgets[layer]
    click_button(qtbot, controls.select_button)
    click_canvas(qtbot, viewer, layer, obj1)  # select the click
    assert layer.selected_data == {0}
    press_key(qtbot, viewer, "Delete")
    assert len(layer.data) == 0
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    assert "mask of" not in widget.status.text()
    # napari's own add tool: the polarity still comes from each press alone (napari selects the
    # added point and copies its features into feature_defaults)
    click_button(qtbot, controls.addition_button)
    click_canvas(qtbot, viewer, layer, (20.0, 20.0), SHIFT)
    click_canvas(qtbot, viewer, layer, obj1)
    assert polarities(viewer) == ["negative", "positive"]
    assert len(layer.face_color) == 2 and not np.allclose(layer.face_color[0], layer.face_color[1])
    wait_mask(qtbot, widget)


def test_preview_stands_out_on_a_reddish_frame(make_napari_viewer, qtbot, model, frame):
    image, labels = frame
    viewer, widget = open_dock(qtbot, make_napari_viewer, model, image, rgb=True)
    click_canvas(qtbot, viewer, clicks_layer(viewer), inside(labels, 1))
    wait_mask(qtbot, widget)
    (preview,) = [ly for ly in viewer.layers if isinstance(ly, Labels) and "preview" in ly.name]
    for ly in viewer.layers:
        ly.visible = ly is preview or ly.name == "frame"
    shown = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    preview.visible = False
    bare = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    changed = np.linalg.norm(shown - bare, axis=-1)
    covered = changed > 1
    assert covered.mean() > 0.01  # the mask is on screen
    assert np.median(changed[covered]) > 80, "the preview is hard to see on this frame"
