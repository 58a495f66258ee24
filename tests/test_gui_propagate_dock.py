"""The Propagate dock driven as a person drives it: canvas clicks, a paint stroke, a dragged box, buttons.

Scene set-up (the sample stack opened as an image, a random-weights model given
to the viewer) is done directly; everything else is mouse and keyboard input.
The masks of random weights mean nothing, so the tests check where labels go
(and that they come back out), not what they look like.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari.layers import Labels  # noqa: E402

from gui_forms import choose, tick, type_into  # noqa: E402
from gui_input import click_button, click_canvas, drag_canvas, pick_paint_brush  # noqa: E402
from gui_scenes import clicks_layer, inside  # noqa: E402
from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._views import plugin_layers  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402
from napari_rpsam2.app.propagation import PropagationRun  # noqa: E402
from napari_rpsam2.sample_data import make_instrument_stack  # noqa: E402

CLICK_DOCK, DOCK = "Click segmentation", "Propagate through stack"
TIMEOUT = 120_000


@pytest.fixture(scope="module")
def stack():
    return make_instrument_stack(3)


def open_viewer(qtbot, make_napari_viewer, model, image, *, background=False):
    """The stack opened, the click dock open (background embedding as chosen), the model given."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name="frames", rgb=True)
    _, clicks = viewer.window.add_plugin_dock_widget("napari-rpsam2", CLICK_DOCK)
    if background:
        tick(qtbot, clicks.precompute_box)
    viewer.window._qt_window.resize(1280, 800)
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    qtbot.wait(10)
    viewer.reset_view()
    viewer.dims.set_current_step(0, 0)  # napari opens a stack on its middle slice; the person goes to the first
    return viewer, clicks


def click_and_commit(qtbot, viewer, clicks, where):
    click_canvas(qtbot, viewer, clicks_layer(viewer), where)
    qtbot.waitUntil(lambda: not clicks.busy and "mask of" in clicks.status.text(), timeout=TIMEOUT)
    click_button(qtbot, clicks.commit_button)
    (target,) = [ly for ly in viewer.layers if isinstance(ly, Labels) and "preview" not in ly.name]
    return target


def open_dock(viewer):
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", DOCK)
    return dock


def wait_done(qtbot, dock):
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)


def test_propagate_adds_the_committed_object_to_every_slice_and_undo_takes_it_back(
        make_napari_viewer, qtbot, model, stack):
    image, truth = stack
    viewer, clicks = open_viewer(qtbot, make_napari_viewer, model, image)
    target = click_and_commit(qtbot, viewer, clicks, inside(truth[0], 1))
    assert set(np.unique(target.data[0])) == {0, 1} and not target.data[1:].any()
    # the person paints an object of their own on slice 1, over where object 1 lies there
    viewer.dims.set_current_step(0, 1)
    pick_paint_brush(qtbot, viewer, target, 9)
    click_canvas(qtbot, viewer, target, inside(truth[1], 1))
    painted = target.data[1] == 9
    assert painted.any()
    viewer.dims.set_current_step(0, 0)
    before = np.array(target.data[:])

    dock = open_dock(viewer)
    # results go by default into the layer the click dock committed into (a new layer only when there is none)
    assert dock.image_picker.layer().name == "frames" and dock.target_picker.layer() is target
    choose(qtbot, dock.source_picker, target.name)  # the person asks for the committed objects
    click_button(qtbot, dock.run_button)
    assert dock.running and not dock.run_button.isEnabled()
    # slices already done are on screen while the run goes on (watched after the dock draws each one)
    (live,) = plugin_layers(viewer, "propagating")
    shown = []
    dock._bridge.message.connect(lambda m: shown.append((m[1], dock.running, bool(live.data[m[1]].any()))))
    wait_done(qtbot, dock)
    assert {1, 2} <= {t for t, running, drawn in shown if running and drawn}, shown
    assert "Propagated" in dock.status.text(), dock.status.text()
    assert plugin_layers(viewer, "propagating") == []
    after = target.data
    kept = before != 0
    assert np.array_equal(after[kept], before[kept])  # the commit and the painted object are untouched
    assert np.all(after[1][painted] == 9)
    assert (after[1] == 1).any() and (after[2] == 1).any(), "object 1 did not reach the other slices"
    assert set(np.unique(after)) <= {0, 1, 9}
    assert dock.progress.value() == dock.progress.maximum()

    click_button(qtbot, dock.undo_button)
    assert np.array_equal(target.data, before)
    assert "painting" in dock.undo_button.toolTip()  # next in the layer's one history: the brush stroke before it


def test_cancel_mid_run_leaves_the_labels_untouched(make_napari_viewer, qtbot, model, stack):
    image, truth = stack
    viewer, clicks = open_viewer(qtbot, make_napari_viewer, model, image, background=False)
    target = click_and_commit(qtbot, viewer, clicks, inside(truth[0], 2))
    before = np.array(target.data[:])
    dock = open_dock(viewer)
    choose(qtbot, dock.source_picker, target.name)
    choose(qtbot, dock.target_picker, target.name)
    click_button(qtbot, dock.run_button)
    qtbot.waitUntil(lambda: dock.progress.value() >= 1, timeout=TIMEOUT)  # slice 0 done, slice 1 encoding
    assert dock.running
    click_button(qtbot, dock.cancel_button)
    wait_done(qtbot, dock)
    assert "Cancelled" in dock.status.text(), dock.status.text()
    assert np.array_equal(target.data, before)
    assert plugin_layers(viewer, "propagating") == []
    assert "commit of object" in dock.undo_button.toolTip()  # the run left no step: Undo would take the commit back


def test_cancel_on_a_long_run_acts_within_a_frame(make_napari_viewer, qtbot, model, monkeypatch):
    """A 16-frame run (several seconds): Cancel pressed after a few frames; at most 2 more are tracked."""
    image, truth = make_instrument_stack(16, shape=(128, 160), seed=11)  # frames no other test has encoded
    reported: list[tuple[float, int]] = []  # (when, frame count) as the run reports it, before the dock
    propagate = PropagationRun.propagate

    def counted(self, prompts, options, **kwargs):
        shown = kwargs["progress"]

        def progress(stage, done, total):
            if stage == "frames":
                reported.append((time.monotonic(), done))
            shown(stage, done, total)

        return propagate(self, prompts, options, **{**kwargs, "progress": progress})

    monkeypatch.setattr(PropagationRun, "propagate", counted)
    viewer, clicks = open_viewer(qtbot, make_napari_viewer, model, image, background=False)
    target = click_and_commit(qtbot, viewer, clicks, inside(truth[0], 1))
    before = np.array(target.data[:])
    dock = open_dock(viewer)
    choose(qtbot, dock.source_picker, target.name)
    choose(qtbot, dock.target_picker, target.name)
    click_button(qtbot, dock.run_button)
    qtbot.waitUntil(lambda: dock.progress.value() >= 3, timeout=TIMEOUT)  # three frames shown as done
    assert dock.running and dock.progress.maximum() == 16
    pressed = time.monotonic()
    click_button(qtbot, dock.cancel_button)
    wait_done(qtbot, dock)
    after = [done for when, done in reported if when > pressed]
    assert len(after) <= 2, f"frames tracked after Cancel: {after}"
    assert max(done for _, done in reported) < 8, "the run went on well past the press"
    assert "Cancelled" in dock.status.text(), dock.status.text()
    assert np.array_equal(target.data, before), "a cancelled run wrote into the target"
    assert plugin_layers(viewer, "propagating") == []
    assert "commit of object" in dock.undo_button.toolTip()  # the run left no step: Undo would take the commit back


def test_a_box_dragged_on_the_canvas_and_the_click_docks_clicks_are_propagated(
        make_napari_viewer, qtbot, model, stack, monkeypatch):
    image, truth = stack
    viewer, clicks = open_viewer(qtbot, make_napari_viewer, model, image, background=False)
    clicked = inside(truth[0], 1)
    click_canvas(qtbot, viewer, clicks_layer(viewer), clicked)  # clicked, not committed
    qtbot.waitUntil(lambda: not clicks.busy and "mask of" in clicks.status.text(), timeout=TIMEOUT)
    target = viewer.add_labels(np.zeros(truth.shape, np.int32), name="objects")  # the person's own layer
    dock = open_dock(viewer)
    choose(qtbot, dock.target_picker, "objects")
    rows, cols = np.nonzero(truth[0] == 2)
    top, left, bottom, right = rows.min(), cols.min(), rows.max(), cols.max()
    click_button(qtbot, dock.draw_button)
    (boxes,) = plugin_layers(viewer, "boxes")
    assert viewer.layers.selection.active is boxes and boxes.mode == "add_rectangle"
    drag_canvas(qtbot, viewer, boxes, (top, left), (bottom, right))
    assert len(boxes.data) == 1 and boxes.shape_type == ["rectangle"]
    type_into(qtbot, dock.options.stop, "1")  # slices 0 and 1 only: one encode less
    # the run is held before it hands its result to the dock, however fast the machine, until the
    # person has painted (below)
    painted = threading.Event()
    tracked = PropagationRun.propagate
    monkeypatch.setattr(PropagationRun, "propagate",
                        lambda *args, **kwargs: (tracked(*args, **kwargs), painted.wait(120))[0])
    click_button(qtbot, dock.run_button)
    # while it runs, the person paints an object of their own on slice 2 with id 1: the id the dock
    # picked for the clicked object when the run started
    viewer.dims.set_current_step(0, 2)
    pick_paint_brush(qtbot, viewer, target, 1)
    click_canvas(qtbot, viewer, target, inside(truth[2], 1))
    mine = target.data[2] == 1
    assert mine.any() and dock.running, "the paint stroke must land during the run"
    painted.set()
    viewer.dims.set_current_step(0, 0)
    wait_done(qtbot, dock)
    assert "Propagated" in dock.status.text(), dock.status.text()
    assert "object 1 is 3 (id 1 was labelled meanwhile)" in dock.status.text(), dock.status.text()
    by_object = {p.object: p for p in dock.last_result.prompts}
    assert sorted(by_object) == [2, 3]  # the box is object 2; the clicks were object 1, now 3 (the person took 1)
    assert np.allclose(by_object[3].points, [clicked], atol=1.0) and by_object[3].slice == 0
    prompt = by_object[2]
    assert prompt.slice == 0
    tolerance = 2.0  # canvas pixels are a little coarser than image pixels at this zoom
    assert np.allclose(prompt.box, (top, left, bottom, right), atol=tolerance), prompt.box
    assert dock.last_result.tracked.tolist() == [True, True, False]
    assert np.array_equal(target.data[2] != 0, mine)  # outside the range: only the person's object
    assert len(boxes.data) == 0  # the box is an object in the labels now: a second run must not add it again
    # the clicked object did not merge into the person's object 1: it came as 3, the box as 2
    assert set(np.unique(target.data[:2])) <= {0, 2, 3} and (target.data[:2] == 3).any()
    assert len(clicks_layer(viewer).data) == 0  # the clicked object is in the labels now
    click_button(qtbot, dock.undo_button)
    assert not target.data[:2].any() and np.array_equal(target.data[2] != 0, mine)


def test_clicks_on_a_propagated_slice_correct_one_object_with_the_memory_kept(
        make_napari_viewer, qtbot, model, stack):
    image, truth = stack
    viewer, clicks = open_viewer(qtbot, make_napari_viewer, model, image, background=False)
    target = click_and_commit(qtbot, viewer, clicks, inside(truth[0], 1))
    click_canvas(qtbot, viewer, clicks_layer(viewer), inside(truth[0], 2))
    qtbot.waitUntil(lambda: not clicks.busy and "mask of" in clicks.status.text(), timeout=TIMEOUT)
    click_button(qtbot, clicks.commit_button)
    assert set(np.unique(target.data[0])) == {0, 1, 2}
    dock = open_dock(viewer)
    choose(qtbot, dock.source_picker, target.name)
    choose(qtbot, dock.target_picker, target.name)
    click_button(qtbot, dock.run_button)
    wait_done(qtbot, dock)
    assert "Propagated objects 1, 2" in dock.status.text(), dock.status.text()
    kept = dock._runs[dock.image_picker.layer().unique_id].run
    first = np.array(target.data[:])
    assert viewer.layers.selection.active is clicks_layer(viewer), "the clicks layer stays the active one"
    assert (first[2] == 1).any() and (first[2] == 2).any()

    # the person goes to the last (propagated) slice and clicks there to fix object 1
    type_into(qtbot, dock.options.correct, "1")
    viewer.dims.set_current_step(0, 2)
    where = inside(truth[2], 1)
    click_canvas(qtbot, viewer, clicks_layer(viewer), where)
    qtbot.waitUntil(lambda: not clicks.busy and "mask of" in clicks.status.text(), timeout=TIMEOUT)
    click_button(qtbot, dock.run_button)
    wait_done(qtbot, dock)
    assert "Corrected object 1" in dock.status.text(), dock.status.text()
    after = np.array(target.data[:])
    # the same run continued (SAM2's memory kept), now conditioned on slice 2 too
    assert dock._runs[dock.image_picker.layer().unique_id].run is kept
    assert kept.session.prompted_slices()[1] == [0, 2]
    assert dock.last_result.prompts[-1].slice == 2 and dock.last_result.prompts[-1].object == 1
    assert np.array_equal(after == 2, first == 2), "object 2 must stay as it was"
    assert np.array_equal(after[0], first[0]), "object 1's own prompt on slice 0 stays"
    assert not np.array_equal(after[2] == 1, first[2] == 1), "the correction changed object 1 on slice 2"
    assert len(clicks_layer(viewer).data) == 0  # the correction's clicks are used up

    click_button(qtbot, dock.undo_button)  # the correction only
    assert np.array_equal(target.data, first)


def test_a_run_writes_only_where_the_person_chose_and_a_deleted_target_ends_it(
        make_napari_viewer, qtbot, model, stack):
    image, truth = stack
    viewer, clicks = open_viewer(qtbot, make_napari_viewer, model, image, background=False)
    truth_layer = viewer.add_labels(truth.copy(), name="ground truth")  # e.g. the sample's labels
    viewer.layers.selection.active = clicks_layer(viewer)
    dock = open_dock(viewer)
    assert dock.source_picker.layer() is None and dock.target_picker.layer() is None
    type_into(qtbot, dock.options.stop, "1")  # slices 0 and 1: one encode less
    # one press with nothing clicked: nothing is taken from the ground truth, nothing written
    click_button(qtbot, dock.run_button)
    assert "Nothing to propagate" in dock.status.text(), dock.status.text()
    assert not dock.running and np.array_equal(truth_layer.data, truth)

    click_canvas(qtbot, viewer, clicks_layer(viewer), inside(truth[0], 1))
    qtbot.waitUntil(lambda: not clicks.busy and "mask of" in clicks.status.text(), timeout=TIMEOUT)
    click_button(qtbot, dock.run_button)
    assert viewer.layers.selection.active is clicks_layer(viewer), "clicks stay usable during the run"
    wait_done(qtbot, dock)
    assert "Propagated objects 1" in dock.status.text(), dock.status.text()
    (made,) = [ly for ly in viewer.layers if ly.name == "frames propagated"]
    assert dock.target_picker.layer() is made
    assert (made.data[0] == 1).any() and not made.data[2].any()
    assert np.array_equal(truth_layer.data, truth), "the ground truth is never written"
    assert viewer.layers.selection.active is clicks_layer(viewer)

    # a second object on slice 0, now through slice 2 (not encoded yet); the person deletes the target
    # while the run goes on
    click_canvas(qtbot, viewer, clicks_layer(viewer), inside(truth[0], 2))
    qtbot.waitUntil(lambda: not clicks.busy and "mask of" in clicks.status.text(), timeout=TIMEOUT)
    type_into(qtbot, dock.options.stop, "2")
    written = dock.last_result
    click_button(qtbot, dock.run_button)
    qtbot.waitUntil(lambda: dock.progress.value() >= 1, timeout=TIMEOUT)  # slice 0 done, slice 2 encoding
    assert dock.running
    viewer.layers.selection.active = made
    click_button(qtbot, viewer.window._qt_viewer.layerButtons.deleteButton)
    assert made not in viewer.layers
    # the run is told to stop at once (Cancel is no longer offered), before it finishes
    assert "was deleted" in dock.status.text() and not dock.cancel_button.isEnabled(), dock.status.text()
    wait_done(qtbot, dock)
    assert "deleted" in dock.status.text(), dock.status.text()
    assert dock.last_result is written  # the run's result was not written anywhere
    assert np.array_equal(truth_layer.data, truth)
    assert [ly.name for ly in viewer.layers if ly.name.endswith("propagated")] == []
