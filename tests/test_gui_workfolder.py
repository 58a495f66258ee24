"""The click dock's work folder, with real input: commit two objects, close napari, reopen the file: all back."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari.layers import Labels, Points  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from gui_input import click_button, click_canvas, press_key  # noqa: E402
from gui_scenes import inside  # noqa: E402
from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402

SHIFT = Qt.KeyboardModifier.ShiftModifier


def _open_file(qtbot, make_napari_viewer, model, path):
    """A viewer with ``path`` opened as a person would (File ▸ Open reads it with napari's reader), and the dock."""
    viewer = make_napari_viewer(show=True)
    (image,) = viewer.open(str(path), plugin="napari")
    workspace_for(viewer).set_model(RPSAM2(model.backbone, cache=model.cache))
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
    dock.precompute_box.setChecked(False)
    viewer.window._qt_window.resize(1280, 800)
    qtbot.wait(10)
    viewer.reset_view()
    return viewer, dock, image


def _wait_mask(qtbot, dock):
    qtbot.waitUntil(lambda: not dock.busy and "mask of" in dock.status.text(), timeout=120_000)


def test_commits_survive_closing_napari_and_come_back_with_their_prompts(make_napari_viewer, qtbot, model,
                                                                          instrument_stack, tmp_path):
    import tifffile

    frames, truth = instrument_stack
    path = tmp_path / "clip.tif"
    tifffile.imwrite(path, frames[:2], photometric="rgb")
    viewer, dock, image = _open_file(qtbot, make_napari_viewer, model, path)
    assert dock.workfolder.save_box.isChecked() and str(tmp_path / "clip.rpsam2") in dock.workfolder.path_label.text()
    press_key(qtbot, viewer, Qt.Key.Key_Left)  # slice 0
    clicks = dock.layers()["prompts"]
    first, second = inside(truth[0], 1), inside(truth[0], 2)
    click_canvas(qtbot, viewer, clicks, first)
    _wait_mask(qtbot, dock)
    click_button(qtbot, dock.commit_button)
    click_canvas(qtbot, viewer, clicks, second)
    click_canvas(qtbot, viewer, clicks, (12.0, 12.0), SHIFT)
    _wait_mask(qtbot, dock)
    press_key(qtbot, viewer, "C", SHIFT)  # commit by key
    target = dock.session.target
    saved = np.asarray(target.data).copy()
    assert set(np.unique(saved)) == {0, 1, 2}
    n_layers = len(viewer.layers)
    viewer.window.remove_dock_widget(dock)  # closing and reopening the dock does not restore a second copy
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
    assert len(viewer.layers) == n_layers and dock.target_picker.layer() is target
    viewer.close()

    viewer, dock, image = _open_file(qtbot, make_napari_viewer, model, path)
    (restored,) = [ly for ly in viewer.layers if isinstance(ly, Labels) and "napari_rpsam2" not in ly.metadata]
    np.testing.assert_array_equal(np.asarray(restored.data), saved)
    assert dock.target_picker.layer() is restored  # the next commit goes on from object 3
    (prompts,) = [ly for ly in viewer.layers if isinstance(ly, Points)
                  and ly.metadata.get("napari_rpsam2", {}).get("role") == "saved prompts"]
    got = sorted(zip(prompts.features["object"].tolist(), prompts.features["positive"].tolist(),
                     prompts.data.tolist()))
    want = sorted([(1, True, [0.0, *first]), (2, True, [0.0, *second]), (2, False, [0.0, 12.0, 12.0])])
    assert [g[:2] for g in got] == [w[:2] for w in want]
    np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], atol=1.0)  # a click lands within 1 px
    assert "Restored 2 object(s)" in dock.status.text()

    click_button(qtbot, dock.undo_button)  # nothing committed in this viewer yet: nothing undone, nothing lost
    click_canvas(qtbot, viewer, dock.layers()["prompts"], inside(truth[1], 1) if truth[1].any() else first)
    _wait_mask(qtbot, dock)
    click_button(qtbot, dock.commit_button)
    assert (np.asarray(restored.data) == 3).any()
    click_button(qtbot, dock.undo_button)
    journal = [json.loads(line) for line in (tmp_path / "clip.rpsam2" / "objects.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in journal] == ["commit", "commit", "commit", "undo"]
    assert journal[-1]["undoes"] == journal[-2]["seq"] and journal[1]["prompts"][0]["labels"] == [1, 0]
    # Ctrl-Shift-Z / Ctrl-Z on the layer are saved too: a redo is an undo of the undo, then the commit is undone again
    viewer.layers.selection.active = restored
    ctrl = Qt.KeyboardModifier.ControlModifier
    press_key(qtbot, viewer, "Z", ctrl | Qt.KeyboardModifier.ShiftModifier)
    assert (np.asarray(restored.data) == 3).any()
    assert 3 in dock.workfolder.folder().restore().objects
    press_key(qtbot, viewer, "Z", ctrl)
    assert not (np.asarray(restored.data) == 3).any() and 3 not in dock.workfolder.folder().restore().objects
    journal = [json.loads(line) for line in (tmp_path / "clip.rpsam2" / "objects.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in journal] == ["commit", "commit", "commit", "undo", "undo", "undo"]
    assert journal[4]["undoes"] == journal[3]["seq"] and journal[5]["undoes"] == journal[2]["seq"]

    # Export… (the folder dialog answered with tmp_path/"out"): labels, prompts CSV and COCO with the layer's classes
    from pycocotools.coco import COCO

    restored.features = {"index": [0, 1, 2], "class": ["background", "grasper", "hook"]}
    (tmp_path / "out").mkdir()
    assert dock.workfolder.export_button.isVisible()
    assert dock.workfolder.export_to(tmp_path / "out")
    coco = COCO(str(tmp_path / "out" / "coco.json"))
    assert {coco.cats[a["category_id"]]["name"] for a in coco.anns.values()} == {"grasper", "hook"}
    for ann in coco.anns.values():
        frame = coco.imgs[ann["image_id"]]["frame_index"]
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), saved[frame] == ann["object_id"])
    assert "Exported 2 object(s)" in dock.status.text()


def test_commits_a_propagation_and_a_one_shot_run_come_back_with_their_prompts(make_napari_viewer, qtbot, model,
                                                                               instrument_stack, tmp_path):
    """Commit two objects, propagate a third, run one-shot on the first (Undo, Run again, Re-run a slice); reopen."""
    import tifffile
    from gui_forms import choose, type_into

    frames, truth = instrument_stack
    path = tmp_path / "clip.tif"
    tifffile.imwrite(path, frames, photometric="rgb")
    viewer, dock, image = _open_file(qtbot, make_napari_viewer, model, path)
    press_key(qtbot, viewer, Qt.Key.Key_Left)  # napari opens the middle slice: slice 0
    clicks = dock.layers()["prompts"]
    for oid in (1, 2):
        click_canvas(qtbot, viewer, clicks, inside(truth[0], oid))
        _wait_mask(qtbot, dock)
        click_button(qtbot, dock.commit_button)
    target = dock.session.target
    third = inside(truth[0], 0)  # a click on the background, not committed: the Propagate dock's object
    click_canvas(qtbot, viewer, clicks, third)
    _wait_mask(qtbot, dock)

    _, prop = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Propagate through stack")
    choose(qtbot, prop.target_picker, target.name)  # into the layer the work folder keeps
    click_button(qtbot, prop.run_button)
    qtbot.waitUntil(lambda: not prop.running, timeout=120_000)
    assert "Propagated objects 3" in prop.status.text() and "Saved to clip.rpsam2" in prop.status.text(), \
        prop.status.text()
    assert (np.asarray(target.data)[1:] == 3).any()

    _, one = viewer.window.add_plugin_dock_widget("napari-rpsam2", "One-shot segmentation")
    choose(qtbot, one.labels_picker, target.name)
    choose(qtbot, one.target_picker, target.name)
    type_into(qtbot, one.form.object_ids, "1")
    for button, said in ((one.run_button, "Saved to"), (one.undo_button, "Undid the one-shot run"),
                         (one.run_button, "Saved to")):  # a run, its undo (saved: the journal below), the run again
        click_button(qtbot, button)
        qtbot.waitUntil(lambda: not one.running, timeout=240_000)
        assert said in one.status.text(), one.status.text()
    press_key(qtbot, viewer, Qt.Key.Key_Right)  # slice 1: re-run it from the clicks the run generated there
    click_button(qtbot, one.rerun_button)
    qtbot.waitUntil(lambda: not one.running, timeout=120_000)
    assert "Slice 1 re-segmented" in one.status.text() and "Saved to" in one.status.text(), one.status.text()
    saved = np.asarray(target.data).copy()
    journal = [json.loads(line) for line in (tmp_path / "clip.rpsam2" / "objects.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in journal] == ["commit", "commit", "propagation", "oneshot", "undo", "oneshot",
                                            "oneshot-slice"]
    assert journal[4]["undoes"] == journal[3]["seq"] and journal[6]["prompts"][0]["slice"] == [1]
    viewer.close()

    viewer, dock, image = _open_file(qtbot, make_napari_viewer, model, path)
    (restored,) = [ly for ly in viewer.layers if isinstance(ly, Labels) and "napari_rpsam2" not in ly.metadata]
    np.testing.assert_array_equal(np.asarray(restored.data), saved)
    assert "Restored 3 object(s)" in dock.status.text()
    table = restored.features.set_index("index")
    assert table.loc[1, "made_by"] == "commit + oneshot + oneshot-slice"
    assert table.loc[1, "method"] == "rpsam2 + persam + persam"
    assert table.loc[2, "made_by"] == "commit" and table.loc[3, "made_by"] == "propagation"
    assert table.loc[1, "prompt_slices"] == "0, 1"  # its click, the run's reference slice, the re-run slice
    (prompts,) = [ly for ly in viewer.layers if isinstance(ly, Points)
                  and ly.metadata.get("napari_rpsam2", {}).get("role") == "saved prompts"]
    got = sorted((o, p) for o, p in zip(prompts.features["object"].tolist(), prompts.data.tolist()) if p[0] == 0)
    want = [(1, [0.0, *inside(truth[0], 1)]), (2, [0.0, *inside(truth[0], 2)]), (3, [0.0, *third])]
    rerun_clicks = journal[6]["prompts"][0]["clicks"]  # the re-run slice's clicks come back on slice 1
    assert sorted(p[1:] for o, p in zip(prompts.features["object"], prompts.data.tolist()) if p[0] == 1) == \
        sorted(rerun_clicks)
    assert [g[0] for g in got] == [1, 2, 3]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1.0)


def test_a_propagation_with_the_default_write_into_is_saved_with_the_commits_and_so_are_its_ctrl_z_and_redo(
        make_napari_viewer, qtbot, model, instrument_stack, tmp_path):
    """Commit an object, click another, open Propagate and press it as it comes; Ctrl-Z, Ctrl-Shift-Z on the layer."""
    import tifffile

    frames, truth = instrument_stack
    path = tmp_path / "clip.tif"
    tifffile.imwrite(path, frames, photometric="rgb")
    viewer, dock, image = _open_file(qtbot, make_napari_viewer, model, path)
    press_key(qtbot, viewer, Qt.Key.Key_Left)  # napari opens the middle slice: slice 0
    clicks = dock.layers()["prompts"]
    click_canvas(qtbot, viewer, clicks, inside(truth[0], 1))
    _wait_mask(qtbot, dock)
    click_button(qtbot, dock.commit_button)
    target = dock.session.target
    committed = np.asarray(target.data).copy()
    click_canvas(qtbot, viewer, clicks, inside(truth[0], 2))  # clicked, not committed: the object to propagate
    _wait_mask(qtbot, dock)

    _, prop = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Propagate through stack")
    assert prop.target_picker.layer() is target  # "Write into" is the layer the commits went to
    click_button(qtbot, prop.run_button)  # every setting as the dock opened
    qtbot.waitUntil(lambda: not prop.running, timeout=120_000)
    assert "Propagated objects 2" in prop.status.text() and "Saved to clip.rpsam2" in prop.status.text(), \
        prop.status.text()
    propagated = np.asarray(target.data).copy()
    assert (propagated[1:] == 2).any() and not [ly for ly in viewer.layers if ly.name.endswith("propagated")]
    folder = dock.workfolder.folder()

    def journal():
        return [json.loads(line) for line in (tmp_path / "clip.rpsam2" / "objects.jsonl").read_text().splitlines()]

    assert [e["kind"] for e in journal()] == ["commit", "propagation"]
    np.testing.assert_array_equal(folder.restore().labels, propagated)

    viewer.layers.selection.active = target  # the person selects the Labels layer and presses Ctrl-Z
    target.mode = "pan_zoom"
    ctrl = Qt.KeyboardModifier.ControlModifier
    press_key(qtbot, viewer, "Z", ctrl)
    np.testing.assert_array_equal(np.asarray(target.data), committed)
    events = journal()
    assert [e["kind"] for e in events] == ["commit", "propagation", "undo"]
    assert events[2]["undoes"] == events[1]["seq"]
    back = folder.restore()
    assert sorted(back.objects) == [1]
    np.testing.assert_array_equal(back.labels, committed)

    press_key(qtbot, viewer, "Z", ctrl | Qt.KeyboardModifier.ShiftModifier)  # redo: an undo of the undo
    np.testing.assert_array_equal(np.asarray(target.data), propagated)
    events = journal()
    assert [e["kind"] for e in events] == ["commit", "propagation", "undo", "undo"]
    assert events[3]["undoes"] == events[2]["seq"]
    back = folder.restore()
    assert sorted(back.objects) == [1, 2]
    np.testing.assert_array_equal(back.labels, propagated)
