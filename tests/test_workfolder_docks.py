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
    assert state.refusal(viewer, first) is None and first.metadata[RESTORED_KEY] == str(location)
    assert "it keeps 'clip labels'" in state.refusal(viewer, other)  # its planes would replace the first's

    labels = np.zeros((2, 8, 8), np.int32)
    labels[0, :2, :2] = 1
    folder = wf.open_for_image(np.zeros((2, 8, 8), np.uint8), labels.shape, folder=location)
    folder.record("commit", {"objects": [1], "prompts": []}, labels=labels, slices=[(0,)])
    fresh = _layer("new")  # a new viewer where nobody restored the folder's objects
    assert "not restored" in ImageWorkFolder(location).refusal(SimpleNamespace(layers=[fresh]), fresh)
    assert RESTORED_KEY not in fresh.metadata


def test_an_undo_is_matched_to_the_event_that_saved_its_write():
    from napari_rpsam2.app.label_changes import LabelChange

    state = ImageWorkFolder(None)
    a, b = LabelChange(), LabelChange()  # equal, but two writes
    state.remember(a, 4)
    state.remember(b, 7)
    assert state.seq_of(a) == 4 and state.seq_of(b) == 7 and state.seq_of(LabelChange()) is None
