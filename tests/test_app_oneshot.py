"""The 'segment the stack from this slice' use case: merge only into empty pixels, one undo, cancel."""

import numpy as np
import pytest

from napari_rpsam2.app.oneshot import merge_results, propagate_from_slice
from napari_rpsam2.jobs import CancelFlag, Cancelled
from napari_rpsam2.oneshot import ObjectResult, SliceResult


def _painted(labels):
    target = np.zeros_like(labels)
    target[1, :40, :] = 7  # the user already painted something on slice 1
    return target


def test_results_fill_only_empty_pixels_and_one_undo_reverts_them(model, instrument_stack):
    images, labels = instrument_stack
    target = _painted(labels)
    before = target.copy()
    seen = []
    outcome = propagate_from_slice(model, images, 0, labels[0], target, method="persam", object_ids=[1],
                                   targets=[1], progress=lambda *a: seen.append(a))
    assert seen[-1] == ("slices", 1, 1)
    mask = outcome.results[1].objects[0].mask
    assert np.array_equal(target[1, :40], before[1, :40]), "painted labels must not change"
    assert np.array_equal(target[1] == 1, mask & (before[1] == 0))
    assert not target[0].any() and not target[2].any()
    assert outcome.edit.size == int((mask & (before[1] == 0)).sum())
    clicks = outcome.clicks
    assert clicks.data.shape == (2, 3) and clicks.data[:, 0].tolist() == [1.0, 1.0]
    assert clicks.label.tolist() == [1, 0] and clicks.object_id.tolist() == [1, 1]
    outcome.edit.undo(target)
    assert np.array_equal(target, before)
    outcome.edit.redo(target)
    assert np.array_equal(target[1] == 1, mask & (before[1] == 0))

    # the dock merges into the layer itself, later: no volume is needed for the run
    alone = propagate_from_slice(model, images, 0, labels[0], None, method="persam", object_ids=[1], targets=[1])
    assert alone.edit.size == 0 and np.array_equal(alone.results[1].objects[0].mask, mask)
    merged = merge_results(before.copy(), alone.results)
    assert merged.size == outcome.edit.size


def test_cancel_leaves_the_labels_untouched(model, instrument_stack):
    images, labels = instrument_stack
    target = _painted(labels)
    before = target.copy()
    flag = CancelFlag()

    def progress(stage, done, total):
        flag.set()  # the user presses Cancel after the first slice

    with pytest.raises(Cancelled):
        propagate_from_slice(model, images, 0, labels[0], target, method="persam", object_ids=[1],
                             targets=[1, 2], progress=progress, cancel=flag)
    assert np.array_equal(target, before)


def test_merge_never_overwrites_and_later_objects_do_not_cover_earlier_ones():
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[:2], b[1:3] = True, True
    res = {0: SliceResult(0, [ObjectResult(3, a, 1.0, np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2))),
                              ObjectResult(5, b, 1.0, np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)))])}
    target = np.zeros((1, 4, 4), np.int32)
    target[0, 0, 0] = 9
    edit = merge_results(target, res)
    assert target[0, 0, 0] == 9 and (target[0, 0, 1:] == 3).all() and (target[0, 1] == 3).all()
    assert (target[0, 2] == 5).all() and not target[0, 3].any()
    edit.undo(target)
    assert target.sum() == 9


def test_a_label_volume_of_the_wrong_shape_is_refused(model, instrument_stack):
    images, labels = instrument_stack
    with pytest.raises(ValueError, match="does not match the stack"):
        propagate_from_slice(model, images, 0, labels[0], np.zeros((2, 10, 10), np.int32))


def test_undo_keeps_what_the_person_painted_after_the_merge():
    from napari_rpsam2.app.oneshot import LabelEdit

    labels = np.zeros((2, 4, 4), np.int32)
    index = (np.array([1, 1, 1]), np.array([0, 0, 1]), np.array([0, 1, 0]))
    edit = LabelEdit.of_pixels(labels.shape, index, np.zeros(3, np.int32), np.array([5, 5, 5], np.int32))
    edit.redo(labels)
    assert labels[index].tolist() == [5, 5, 5]
    labels[1, 0, 1] = 9  # painted over one merged pixel afterwards
    edit.undo(labels)
    assert labels[1, 0, 0] == 0 and labels[1, 1, 0] == 0 and labels[1, 0, 1] == 9
