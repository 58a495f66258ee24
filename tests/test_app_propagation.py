"""The propagation use case: existing labels untouched, one Undo, Cancel writes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from napari_rpsam2.app.propagation import propagate_into_labels, renumber_taken_ids
from napari_rpsam2.jobs import CancelFlag, Cancelled
from napari_rpsam2.model import FramePrompt, PromptError
from napari_rpsam2.model.propagation import PropagationResult

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _prompt(labels):
    gt = labels[0] == labels[0].max()
    return [FramePrompt(0, 9, mask=gt)], gt


def test_existing_labels_are_kept_and_one_undo_reverts_the_whole_propagation(model, instrument_stack):
    image, labels = instrument_stack
    prompts, gt = _prompt(labels)
    target = np.zeros(labels.shape, np.int32)
    target[:, :, :40] = 4  # the user's earlier work, on both slices
    before = target.copy()
    result, undo = propagate_into_labels(model, image, prompts, target, direction="forward", stop=2)
    kept = before != 0
    assert np.array_equal(target[kept], before[kept])  # nothing the user had was overwritten
    assert set(undo.slices) == {0, 1}
    for t in (0, 1):
        assert np.array_equal(target[t] == 9, (result.labels[t] == 9) & ~kept[t])
    assert (target[0] == 9).sum() > 0.9 * (gt & ~kept[0]).sum()
    assert undo.pixels == int((target == 9).sum())

    target[1, 200, 300] = 4  # an edit made after the propagation stays
    undo.undo(target)
    expected = before.copy()
    expected[1, 200, 300] = 4
    assert np.array_equal(target, expected)


def test_cancel_leaves_the_labels_untouched(model, instrument_stack):
    image, labels = instrument_stack
    prompts, _ = _prompt(labels)
    target = np.zeros(labels.shape, np.int32)
    target[2, 5, 5] = 1
    before = target.copy()
    flag = CancelFlag()

    def progress(stage, done, total):
        flag.set()  # the user presses Cancel once the first slice is done

    with pytest.raises(Cancelled):
        propagate_into_labels(model, image, prompts, target, direction="forward", progress=progress,
                              cancel=flag)
    assert np.array_equal(target, before)


def test_labels_layer_of_another_shape_is_refused(model, instrument_stack):
    image, labels = instrument_stack
    prompts, _ = _prompt(labels)
    with pytest.raises(PromptError, match="labels layer"):
        propagate_into_labels(model, image, prompts, np.zeros((2, 10, 10), np.int32))


def test_a_new_object_whose_id_was_labelled_meanwhile_gets_a_fresh_id():
    labels = np.zeros((2, 4, 4), np.int32)
    labels[0, 0] = 5  # a committed object (kept its id)
    labels[0, 1] = 6  # the clicked object: id 6 was free when the run started
    labels[1, 2] = 7  # a box
    result = PropagationResult(labels, np.zeros((2, 3), np.float32), (5, 6, 7), np.ones(2, bool), {6: [1]})
    target = np.zeros((2, 4, 4), np.int32)
    target[1, 3, 3] = 6  # the person labelled something 6 during the run
    renamed_result, renamed = renumber_taken_ids(result, target, new_ids=(6, 7))
    assert renamed == {6: 8}
    assert renamed_result.object_ids == (5, 8, 7) and renamed_result.stopped == {8: [1]}
    assert (renamed_result.labels[0, 1] == 8).all() and (renamed_result.labels[0, 0] == 5).all()
    assert (renamed_result.labels[1, 2] == 7).all() and renamed_result.labels.dtype == labels.dtype
    same, none = renumber_taken_ids(result, np.zeros_like(target), new_ids=(6, 7))
    assert same is result and none == {}


def test_a_correction_replaces_only_the_corrected_object_and_undo_restores_it():
    from napari_rpsam2.app.propagation import replace_objects
    from napari_rpsam2.model.propagation import PropagationResult

    target = np.zeros((2, 4, 4), np.int32)
    target[1, 0, :] = 1          # object 1 as the first run left it on slice 1
    target[1, 3, :] = 2          # another object
    target[0, 0, 0] = 1          # slice 0 is not tracked by the correction
    labels = np.zeros_like(target)
    labels[1, 1, :] = 1          # the corrected mask of object 1
    labels[1, 3, 0] = 1          # over object 2: object 2 keeps its pixel
    result = PropagationResult(labels, np.zeros((2, 1), np.float32), (1,), np.array([False, True]))
    before = target.copy()
    undo = replace_objects(target, result, [1])
    assert (target[1, 1] == 1).all() and not (target[1, 0] == 1).any()
    assert (target[1, 3] == 2).all() and target[0, 0, 0] == 1
    undo.undo(target)
    assert np.array_equal(target, before)
