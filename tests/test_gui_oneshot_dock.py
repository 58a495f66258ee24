"""'One-shot segmentation' driven as a person does: combo box, Run, Cancel, Undo, canvas edits, Re-run."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from gui_forms import choose, click, type_into
from gui_input import click_button, click_canvas, press_key, show_viewer
from qtpy.QtCore import Qt

from napari_rpsam2 import RPSAM2
from napari_rpsam2._widgets._oneshot_clicks import COLORS, ROLE
from napari_rpsam2._widgets._views import plugin_role
from napari_rpsam2._widgets._workspace import workspace_for

WIDGET = "One-shot segmentation"
PATCH = (slice(0, 30), slice(0, 40))  # what the person painted on slice 1 before running


@pytest.fixture
def scene(make_napari_viewer, qtbot, instrument_stack, model):
    """The sample stack with the objects painted on slice 0 only, plus a patch (id 9) on slice 1."""
    images, labels = instrument_stack
    viewer = make_napari_viewer()
    img = viewer.add_image(images, rgb=True, name="frames")
    painted = np.zeros_like(labels)
    painted[0] = labels[0]
    painted[(1, *PATCH)] = 9
    lab = viewer.add_labels(painted, name="annotation")
    workspace_for(viewer).set_model(RPSAM2(model.backbone))  # its own cache: each test encodes its slices
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    viewer.window._qt_window.resize(1280, 800)
    show_viewer(qtbot, viewer)
    viewer.reset_view()
    viewer.dims.set_current_step(0, 0)  # the annotated slice is on screen
    dock.image_picker.set_layer(img)
    dock.labels_picker.set_layer(lab)
    return viewer, img, lab, dock


def clicks_layer(viewer):
    (layer,) = [ly for ly in viewer.layers if plugin_role(ly) == ROLE]
    return layer


def _deletable_click(points, result) -> tuple[int, int, int]:
    """``(slice, point index, object id)`` of a positive click alone at its spot, on the object with most pixels."""
    data, feats = points.data, points.features
    best = None
    for i in np.flatnonzero(feats["label"].to_numpy() == 1):
        s, oid = round(data[i, 0]), int(feats["object_id"].iloc[i])
        if (np.linalg.norm(data - data[i], axis=1) < 2).sum() > 1:
            continue
        size = int((result[s] == oid).sum())
        if best is None or size > best[0]:
            best = (size, s, int(i), oid)
    assert best is not None and best[0] > 0, "no generated positive click to delete"
    return best[1:]


def run_and_wait(qtbot, dock) -> None:
    click(qtbot, dock.run_button)
    assert dock.running and not dock.run_button.isEnabled()
    qtbot.waitUntil(lambda: not dock.running, timeout=240_000)


@pytest.mark.parametrize("method", ["P²SAM (part-aware)", "Med-PerSAM (warping)"])
def test_run_fills_the_other_slices_only_where_empty_and_one_undo_reverts_it(scene, qtbot, method):
    viewer, _img, lab, dock = scene
    choose(qtbot, dock.method, method)
    if method.startswith("Med"):
        type_into(qtbot, dock.form.warp_steps, "2")  # a tiny warping model training
        type_into(qtbot, dock.form.rounds, "0")  # no retraining (tests/test_gui_oneshot_settings.py has it)
    choose(qtbot, dock.target_picker, "annotation")  # write into the person's own labels
    before = np.array(lab.data[:])
    run_and_wait(qtbot, dock)
    assert dock.last_outcome is not None, dock.status.text()
    assert dock.last_outcome.method == ("p2sam" if method.startswith("P") else "medpersam")
    after = lab.data
    assert np.array_equal(after[0], before[0]), "the annotated slice changed"
    assert (after[(1, *PATCH)] == 9).all(), "the person's own labels were overwritten"
    changed = after != before
    assert (before[changed] == 0).all()  # only empty pixels were written
    for s in (1, 2):
        assert set(np.unique(after[s][changed[s]])) <= {1, 2} and changed[s].any(), f"slice {s} got no labels"
    # the generated clicks: one Points layer, per slice, green positive / red negative, not offered as input
    points = clicks_layer(viewer)
    assert sorted(set(np.round(points.data[:, 0]).astype(int))) == [1, 2]
    positive = points.features["label"].to_numpy() == 1
    assert positive.any() and (~positive).any()
    assert np.allclose(points.face_color[positive], COLORS[1]) and np.allclose(points.face_color[~positive], COLORS[0])
    for picker in (dock.image_picker, dock.labels_picker, dock.target_picker):
        assert points.name not in [picker.itemText(i) for i in range(picker.count())]
    # one Undo: exactly the labels before, and no generated clicks left
    click(qtbot, dock.undo_button)
    assert np.array_equal(lab.data, before)
    assert len(points.data) == 0 and not dock.undo_button.isEnabled()


def test_cancel_mid_run_leaves_the_labels_untouched(scene, qtbot):
    viewer, _img, lab, dock = scene
    choose(qtbot, dock.method, "Med-PerSAM (warping)")
    type_into(qtbot, dock.form.warp_steps, "5000")
    choose(qtbot, dock.target_picker, "annotation")
    before = np.array(lab.data[:])
    n_layers = len(viewer.layers)
    click(qtbot, dock.run_button)
    qtbot.waitUntil(lambda: dock.progress.value() >= 1 and "warping" in dock.progress.format(), timeout=120_000)
    click(qtbot, dock.cancel_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    assert "Cancelled" in dock.status.text()
    assert np.array_equal(lab.data, before)
    assert len(viewer.layers) == n_layers, "a cancelled run added layers"
    assert dock.run_button.isEnabled() and not dock.undo_button.isEnabled()


def test_deleting_a_generated_click_and_rerunning_changes_that_slice_only(scene, qtbot):
    viewer, _img, lab, dock = scene
    assert dock.target_picker.currentText() == "(new Labels layer)"
    run_and_wait(qtbot, dock)  # PerSAM, the default
    target = dock.target_picker.layer()
    assert target is not None and target in viewer.layers and target is not lab  # the real layer, not a proxy
    result = np.array(target.data[:])
    points = clicks_layer(viewer)
    assert viewer.layers.selection.active is points  # ready for corrections
    # delete a generated positive click (one no other click hides) with the mouse and the Delete key
    s, which, oid = _deletable_click(points, result)
    for _ in range(s):
        press_key(qtbot, viewer, Qt.Key.Key_Right)  # the person steps to that slice
    assert viewer.dims.current_step[0] == s
    click_button(qtbot, viewer.window._qt_viewer.controls.widgets[points].select_button)
    click_canvas(qtbot, viewer, points, points.data[which, 1:])
    assert points.selected_data == {which}
    n = len(points.data)
    press_key(qtbot, viewer, "Delete")
    assert len(points.data) == n - 1
    click(qtbot, dock.rerun_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)
    assert not np.array_equal(target.data[s], result[s]), dock.status.text()
    assert not (target.data[s] == oid).any()  # no positive click left: the object is gone from this slice
    others = [i for i in range(3) if i != s]
    assert np.array_equal(target.data[others], result[others]), "another slice changed"
    assert (lab.data[(1, *PATCH)] == 9).all()
    click(qtbot, dock.undo_button)  # undoes the re-run only
    assert np.array_equal(target.data, result)
