"""Undo records of every write (commit, propagation, one-shot): exact, respectful of later edits, compact."""

from __future__ import annotations

import numpy as np

from napari_rpsam2.app.click_commit import plan_commit, plan_undo
from napari_rpsam2.app.label_changes import LabelChange


def _disc(shape, centre, radius):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2


def test_undo_and_redo_restore_every_slice_exactly():
    rng = np.random.default_rng(0)
    old = rng.integers(0, 3, (3, 40, 50)).astype(np.int32)
    new = old.copy()
    new[0][_disc((40, 50), (10, 10), 6)] = 7
    new[2][_disc((40, 50), (30, 35), 9) & (old[2] == 0)] = 8
    change = LabelChange.of_planes((((i,), old[i], new[i]) for i in range(3)))
    assert change.slice_indices == [(0,), (2,)]  # slice 1 did not change and costs nothing
    assert change.size == int((old != new).sum())
    volume = old.copy()
    change.redo(volume)
    np.testing.assert_array_equal(volume, new)
    change.undo(volume)
    np.testing.assert_array_equal(volume, old)


def test_undo_keeps_pixels_the_person_painted_since():
    old = np.zeros((2, 20, 20), np.int16)
    new = old.copy()
    new[1, 5:10, 5:10] = 4
    change = LabelChange.of_planes([((1,), old[1], new[1])])
    volume = new.copy()
    volume[1, 6, 6] = 9  # painted over one written pixel afterwards
    assert change.undo(volume) == [(1,)]
    assert volume[1, 6, 6] == 9 and volume[1].sum() == 9


def test_records_are_bounded_by_the_changed_region_not_per_pixel_indices():
    """A 4-megapixel object costs a small fraction of a byte per pixel (fancy indices cost 24)."""
    volume = np.zeros((3, 2400, 2400), np.int32)
    mask = _disc((2400, 2400), (1200, 1200), 1100)
    record = plan_commit(volume, (1,), mask)
    assert record.size == int(mask.sum()) > 3_500_000
    assert record.change.nbytes < record.size / 4, f"{record.change.nbytes} bytes for {record.size} pixels"
    volume[record.indices] = record.label_id
    assert (volume[1] == 1).sum() == mask.sum() and not volume[0].any()
    volume[plan_undo(volume, record)] = 0
    assert not volume.any()


def test_commit_writes_only_background_and_undo_only_its_own_pixels():
    target = np.zeros((4, 4), np.uint8)
    target[0, 0] = 3
    record = plan_commit(target, (), np.ones((4, 4), bool))
    assert record.label_id == 4 and record.size == 15
    target[record.indices] = record.label_id
    target[3, 3] = 2  # the person relabels one pixel
    target[plan_undo(target, record)] = 0
    assert target[0, 0] == 3 and target[3, 3] == 2 and target.sum() == 5
