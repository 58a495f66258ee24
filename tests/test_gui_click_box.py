"""The click dock's box prompt, driven as a person does: Draw box, a drag on the canvas, clicks, keys, buttons.

Scene set-up (an image opened, a random-weights model given to the viewer) is
done directly.  Random masks mean nothing, so the tests compare the preview
with SAM2's own mask for the same box (and clicks) instead of with the object.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari.layers import Labels  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from gui_input import click_button, click_canvas, drag_canvas, press_key  # noqa: E402
from gui_scenes import clicks_layer, open_click_dock  # noqa: E402
from napari_rpsam2._widgets._views import plugin_layers  # noqa: E402
from napari_rpsam2.sample_data import make_instrument_stack  # noqa: E402

SHIFT = Qt.KeyboardModifier.ShiftModifier
TIMEOUT = 120_000


@pytest.fixture(scope="module")
def frame():
    image, labels = make_instrument_stack(1)
    return image[0], labels[0]


def draw_box(qtbot, viewer, dock, start, end):
    """Press Draw box, drag a rectangle on the canvas, wait for the preview."""
    click_button(qtbot, dock.box_button)
    (layer,) = plugin_layers(viewer, "click box")
    assert viewer.layers.selection.active is layer and layer.mode == "add_rectangle"
    drag_canvas(qtbot, viewer, layer, start, end)
    wait_preview(qtbot, dock)
    return layer


def wait_preview(qtbot, dock):
    qtbot.waitUntil(lambda: not dock.busy and dock.preview_mask() is not None, timeout=TIMEOUT)


def sam2_mask(model, image, box, points=(), labels=()):
    """SAM2's mask for the same prompt (plain SAM2: an untrained block moves nothing)."""
    pts = np.asarray(points, float).reshape(-1, 2)
    return model.segment(image, pts, np.asarray(labels, int), refine=False, box=box, rgb=True,
                         contrast_limits=[0, 255]).mask


def test_a_box_alone_then_with_a_click_reaches_sam2_and_clear_removes_it(make_napari_viewer, qtbot, model, frame):
    image, labels = frame
    viewer, dock = open_click_dock(qtbot, make_napari_viewer, model, image, rgb=True)
    rows, cols = np.nonzero(labels == 2)
    top, left, bottom, right = (float(v) for v in (rows.min(), cols.min(), rows.max(), cols.max()))
    layer = draw_box(qtbot, viewer, dock, (top, left), (bottom, right))
    box = dock.session.box(())
    assert np.allclose(box, (top, left, bottom, right), atol=2.0), box  # canvas pixels are a little coarse
    assert viewer.layers.selection.active is clicks_layer(viewer) and layer.mode == "pan_zoom"  # back to clicking
    assert len(layer.data) == 1 and len(clicks_layer(viewer).data) == 0
    assert np.array_equal(dock.preview_mask()[1], sam2_mask(model, image, box)), "the box did not reach SAM2"

    # a click inside the object: SAM2 gets the box and the click together
    where = tuple(float(v) for v in np.argwhere(labels == 2)[len(rows) // 2])
    click_canvas(qtbot, viewer, clicks_layer(viewer), where)
    wait_preview(qtbot, dock)
    (clicked,) = dock.session.clicks(())
    expected = sam2_mask(model, image, box, [(clicked.row, clicked.col)], [1])
    assert np.array_equal(dock.preview_mask()[1], expected)

    # a second rectangle replaces the first
    middle = ((top + bottom) / 2, (left + right) / 2)
    draw_box(qtbot, viewer, dock, (top, left), middle)
    assert len(layer.data) == 1 and np.allclose(dock.session.box(()), (top, left, *middle), atol=2.0)

    # Shift-X clears the clicks and the box of the slice
    press_key(qtbot, viewer, "X", SHIFT)
    assert dock.session.box(()) is None and len(layer.data) == 0 and dock.preview_mask() is None
    assert len(clicks_layer(viewer).data) == 0


def test_a_boxed_object_is_committed_and_deleting_the_box_layer_drops_its_box(
        make_napari_viewer, qtbot, model, frame):
    image, labels = frame
    viewer, dock = open_click_dock(qtbot, make_napari_viewer, model, image, rgb=True)
    rows, cols = np.nonzero(labels == 1)
    layer = draw_box(qtbot, viewer, dock, (rows.min(), cols.min()), (rows.max(), cols.max()))
    preview = dock.preview_mask()[1].copy()
    press_key(qtbot, viewer, "C", SHIFT)  # commit
    (target,) = [ly for ly in viewer.layers if isinstance(ly, Labels) and "preview" not in ly.name]
    assert np.array_equal(target.data == 1, preview) and preview.any()
    assert dock.session.box(()) is None and len(layer.data) == 0  # committed: the box is used up

    draw_box(qtbot, viewer, dock, (rows.min(), cols.min()), (rows.max(), cols.max()))
    viewer.layers.selection.active = layer  # the person selects the box layer in the layer list…
    click_button(qtbot, viewer.window._qt_viewer.layerButtons.deleteButton)  # …and deletes it
    assert layer not in viewer.layers
    assert dock.session.box(()) is None and dock.preview_mask() is None  # no box acts unseen
    click_button(qtbot, dock.box_button)  # drawing again makes a new box layer
    assert len(plugin_layers(viewer, "click box")) == 1
