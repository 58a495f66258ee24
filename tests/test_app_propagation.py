"""The propagation use case: existing labels untouched, one Undo, Cancel writes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from napari_rpsam2.app.propagation import propagate_into_labels
from napari_rpsam2.jobs import CancelFlag, Cancelled
from napari_rpsam2.model import FramePrompt, PromptError

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
