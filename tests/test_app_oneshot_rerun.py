"""Correcting a one-shot run: re-run one slice from its clicks, run history, undo one step at a time."""

import numpy as np

from napari_rpsam2.app.oneshot import LabelEdit, propagate_from_slice
from napari_rpsam2.app.oneshot_rerun import RunHistory, rerun_slice, slice_masks
from napari_rpsam2.oneshot.passes import three_passes


def _edit(volume, index, rows, cols, value):
    where = (np.full(len(rows), index, np.intp), np.asarray(rows), np.asarray(cols))
    edit = LabelEdit.of_pixels(volume.shape, where, volume[where].copy(), np.full(len(rows), value, volume.dtype))
    edit.redo(volume)
    return edit


def test_rerun_replaces_only_what_the_runs_wrote_on_that_slice():
    volume = np.zeros((2, 4, 4), np.int32)
    volume[0, 0, 0] = 9  # the person's own label
    history = RunHistory()
    history.push(_edit(volume, 0, [1, 1], [1, 2], 1))
    history.push(_edit(volume, 1, [2], [2], 1))
    before = volume.copy()
    new = np.zeros((4, 4), bool)
    new[0, :2] = True  # covers the person's pixel too
    edit = rerun_slice(volume, 0, {2: new}, history.written(volume, 0))
    assert volume[0, 0, 0] == 9 and volume[0, 0, 1] == 2  # never overwrites the person's label
    assert volume[0, 1, 1] == 0 and volume[0, 1, 2] == 0  # the run's old pixels are gone
    assert np.array_equal(volume[1], before[1])  # the other slice is untouched
    history.push(edit)
    history.undo(volume)
    assert np.array_equal(volume, before)


def test_written_forgets_pixels_the_person_painted_over():
    volume = np.zeros((1, 3, 3), np.int32)
    history = RunHistory()
    history.push(_edit(volume, 0, [0, 1], [0, 1], 1), state="clicks before")
    volume[0, 1, 1] = 5  # painted over after the run
    assert history.written(volume, 0).tolist() == [[True, False, False], [False, False, False],
                                                   [False, False, False]]
    assert history.undo(volume) == "clicks before" and len(history) == 0


def test_slice_masks_decode_the_clicks_as_given_and_drop_objects_without_a_positive_click(model, instrument_stack):
    images, labels = instrument_stack
    target = np.zeros_like(labels)
    outcome = propagate_from_slice(model, images, 0, labels[0], target, method="persam", targets=[1])
    clicks = outcome.clicks
    guide = outcome.guidance  # PerSAM's decoder guidance, for this run's reference
    masks = slice_masks(model, images[1], clicks.data[:, 1:], clicks.label, clicks.object_id, guidance=guide)
    for obj in outcome.results[1].objects:  # unchanged clicks: the run's own masks
        assert np.array_equal(masks[obj.object_id], obj.mask)
    emb = model.embed(images[1])
    moved = clicks.data[:, 1:].copy()
    moved[0] = (10.0, 10.0)  # the person moved object 1's positive click
    again = slice_masks(model, images[1], moved, clicks.label, clicks.object_id, guidance=guide)
    mine = clicks.object_id == 1
    assert np.array_equal(again[1], three_passes(model, emb, moved[mine], clicks.label[mine], guide(1, emb))[-1].mask)
    keep = ~((clicks.object_id == 2) & (clicks.label == 1))  # object 2's positive click deleted
    dropped = slice_masks(model, images[1], clicks.data[keep, 1:], clicks.label[keep], clicks.object_id[keep],
                          guidance=guide)
    assert not dropped[2].any() and np.array_equal(dropped[1], masks[1])
