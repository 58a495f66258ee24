"""Which writes of the docks the image's work folder saves (no viewer: layers stand in as plain objects)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("qtpy")

from napari_rpsam2._widgets._workfolder import RESTORED_KEY, ImageWorkFolder  # noqa: E402
from napari_rpsam2.app import workfolder as wf  # noqa: E402


def _layer(name):
    return SimpleNamespace(name=name, metadata={})


def test_the_folder_keeps_one_labels_layer_and_refuses_to_drop_objects_it_holds(tmp_path):
    location = tmp_path / "clip.rpsam2"
    state = ImageWorkFolder(location)
    first, other = _layer("clip labels"), _layer("clip propagated")
    viewer = SimpleNamespace(layers=[first, other])
    assert state.refusal(viewer, first) is None
    assert RESTORED_KEY not in first.metadata  # tagged only once a save into the folder went through
    first.metadata[RESTORED_KEY] = str(location)  # what save_run does after the folder opened
    assert state.refusal(viewer, first) is None
    assert "it keeps 'clip labels'" in state.refusal(viewer, other)  # its planes would replace the first's

    labels = np.zeros((2, 8, 8), np.int32)
    labels[0, :2, :2] = 1
    folder = wf.open_for_image(np.zeros((2, 8, 8), np.uint8), labels.shape, folder=location)
    folder.record("commit", {"objects": [1], "prompts": []}, labels=labels, slices=[(0,)])
    fresh = _layer("new")  # a new viewer where nobody restored the folder's objects
    assert "not restored" in ImageWorkFolder(location).refusal(SimpleNamespace(layers=[fresh]), fresh)
    assert RESTORED_KEY not in fresh.metadata


def test_undo_and_redo_of_a_saved_step_are_recorded_by_its_history_and_not_while_saving_is_off(tmp_path):
    from napari_rpsam2._widgets._workfolder import save_undo_and_redo
    from napari_rpsam2.app.label_changes import LabelChange
    from napari_rpsam2.app.label_history import LabelHistory

    labels = np.zeros((2, 8, 8), np.int32)
    layer = SimpleNamespace(data=labels)
    history = LabelHistory(lambda: labels)
    folder = wf.open_for_image(np.zeros((2, 8, 8), np.uint8), labels.shape, folder=tmp_path / "clip.rpsam2")
    old = labels.copy()
    labels[1, 2:5, 2:5] = 4  # a propagation wrote object 4 on slice 1
    change = LabelChange.of_planes([((i,), old[i], labels[i]) for i in range(2)])
    step = history.push(change, "propagation of object(s) 4", owner="propagate")
    event = folder.record("propagation", {"objects": [4], "prompts": []}, labels=labels, slices=[(1,)])
    saving, reports = [True], []
    save_undo_and_redo(step, folder, event, layer, change.slice_indices, lambda text, level: reports.append(text),
                       active=lambda: saving[0])

    history.undo()  # Ctrl-Z on the layer, or any dock's Undo
    assert not labels.any() and wf.restore(folder).objects == {} and not wf.restore(folder).labels.any()
    history.redo()  # Ctrl-Shift-Z: an undo of the undo
    back = wf.restore(folder)
    assert sorted(back.objects) == [4] and (back.labels == 4).sum() == 9
    saving[0] = False  # "Save to work folder" turned off: the folder is left as it was
    history.undo()
    assert sorted(wf.restore(folder).objects) == [4]
    kinds = [e["kind"] for e in folder.read_events()[0]]
    assert kinds == ["propagation", "undo", "undo"] and reports == []
