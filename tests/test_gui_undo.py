"""One undo per Labels layer, driven as a person does: commits, a propagation, a brush stroke, a one-shot run,
then Ctrl-Z / Ctrl-Shift-Z on the canvas and the docks' Undo buttons: each step takes back the newest change only.

Scene set-up (the sample stack, a random-weights model) is done directly; the rest is mouse, keys and buttons.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from gui_forms import choose
from gui_input import click_button, click_canvas, paint_stroke, press_key, show_viewer
from gui_scenes import clicks_layer, inside
from napari.layers import Labels
from qtpy.QtCore import Qt

from napari_rpsam2 import RPSAM2
from napari_rpsam2._widgets._label_history import history_for
from napari_rpsam2._widgets._workspace import workspace_for

TIMEOUT = 120_000
CTRL, CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier, (Qt.KeyboardModifier.ControlModifier
                                                         | Qt.KeyboardModifier.ShiftModifier)


def _commit(qtbot, viewer, dock, where):
    viewer.layers.selection.active = clicks_layer(viewer)  # the person picks the clicks layer again
    click_canvas(qtbot, viewer, clicks_layer(viewer), where)
    qtbot.waitUntil(lambda: not dock.busy and "mask of" in dock.status.text(), timeout=TIMEOUT)
    click_button(qtbot, dock.commit_button)
    assert "Committed" in dock.status.text(), dock.status.text()


def test_ctrl_z_and_every_docks_undo_take_back_the_newest_change_only(make_napari_viewer, qtbot, model,
                                                                      instrument_stack):
    image, truth = instrument_stack
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name="frames", rgb=True)
    _, clicks = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
    viewer.window._qt_window.resize(1280, 800)
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    show_viewer(qtbot, viewer)
    viewer.reset_view()
    viewer.dims.set_current_step(0, 0)

    _commit(qtbot, viewer, clicks, inside(truth[0], 1))
    (target,) = [ly for ly in viewer.layers if isinstance(ly, Labels) and "preview" not in ly.name]
    states = [np.zeros(target.data.shape, target.data.dtype), np.array(target.data[:])]

    _, prop = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Propagate through stack")
    qtbot.wait(10)
    viewer.reset_view()  # the canvas is narrower with two docks
    choose(qtbot, prop.source_picker, target.name)
    choose(qtbot, prop.target_picker, target.name)
    click_button(qtbot, prop.run_button)
    qtbot.waitUntil(lambda: not prop.running, timeout=TIMEOUT)
    assert "Propagated" in prop.status.text(), prop.status.text()
    states.append(np.array(target.data[:]))
    assert (states[2][1:] == 1).any()

    viewer.dims.set_current_step(0, 1)
    r, c = inside(truth[1], 1)
    paint_stroke(qtbot, viewer, target, (r, c - 8), (r, c + 8), 9)
    states.append(np.array(target.data[:]))
    assert (states[3][1] == 9).any() and np.array_equal(states[3][[0, 2]], states[2][[0, 2]])
    assert "painting" in prop.undo_button.toolTip()  # the dock names what its Undo would take back

    viewer.dims.set_current_step(0, 2)
    _commit(qtbot, viewer, clicks, inside(truth[2], 2))
    states.append(np.array(target.data[:]))
    assert not np.array_equal(states[4], states[3])
    history = history_for(viewer, target)
    assert [s.owner for s in history.steps()] == ["click", "propagate", "painting", "click"]

    viewer.layers.selection.active = target  # the person selects the Labels layer and presses Ctrl-Z on the canvas
    target.mode = "pan_zoom"
    press_key(qtbot, viewer, "Z", CTRL)  # the commit on slice 2
    np.testing.assert_array_equal(target.data, states[3])
    press_key(qtbot, viewer, "Z", CTRL)  # the brush stroke (napari's own history)
    np.testing.assert_array_equal(target.data, states[2])
    click_button(qtbot, prop.undo_button)  # the propagation
    np.testing.assert_array_equal(target.data, states[1])
    assert "Undid the propagation" in prop.status.text()
    click_button(qtbot, clicks.undo_button)  # the first commit
    np.testing.assert_array_equal(target.data, states[0])
    assert not prop.undo_button.isEnabled()
    press_key(qtbot, viewer, "Z", CTRL)  # nothing left: nothing changes
    np.testing.assert_array_equal(target.data, states[0])

    for expected in states[1:]:  # Ctrl-Shift-Z makes them again, oldest first
        press_key(qtbot, viewer, "Z", CTRL_SHIFT)
        np.testing.assert_array_equal(target.data, expected)
    click_button(qtbot, clicks.undo_button)  # the click dock's Undo takes back the newest change, the commit
    np.testing.assert_array_equal(target.data, states[3])


def test_ctrl_z_after_a_one_shot_run_undoes_the_run_then_the_painting_before_it(make_napari_viewer, qtbot, model,
                                                                                 instrument_stack):
    images, labels = instrument_stack
    viewer = make_napari_viewer(show=True)
    img = viewer.add_image(images, rgb=True, name="frames")
    painted = np.zeros_like(labels)
    painted[0] = labels[0]
    lab = viewer.add_labels(painted, name="annotation")
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "One-shot segmentation")
    viewer.window._qt_window.resize(1280, 800)
    show_viewer(qtbot, viewer)
    viewer.reset_view()
    viewer.dims.set_current_step(0, 1)
    paint_stroke(qtbot, viewer, lab, (5, 5), (5, 30), 7)  # before the plugin ever wrote into this layer
    painted_state = np.array(lab.data[:])
    assert (painted_state[1] == 7).any()
    viewer.dims.set_current_step(0, 0)
    dock.image_picker.set_layer(img)
    dock.labels_picker.set_layer(lab)
    choose(qtbot, dock.target_picker, "annotation")
    click_button(qtbot, dock.run_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=240_000)
    assert dock.last_outcome is not None, dock.status.text()
    assert not np.array_equal(lab.data, painted_state)
    points = [ly for ly in viewer.layers if ly.metadata.get("napari_rpsam2", {}).get("role")]
    assert any(len(p.data) for p in points)

    viewer.layers.selection.active = lab
    lab.mode = "pan_zoom"
    press_key(qtbot, viewer, "Z", CTRL)  # the run, with its clicks
    np.testing.assert_array_equal(lab.data, painted_state)
    assert all(len(p.data) == 0 for p in points)
    assert dock.undo_button.isEnabled() and "painting" in dock.undo_button.toolTip()  # what is left to undo
    press_key(qtbot, viewer, "Z", CTRL)  # the brush stroke made before the run
    np.testing.assert_array_equal(lab.data, painted)
