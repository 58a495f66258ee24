"""The click session without Qt or napari: clicks per slice, stale results, commit and undo."""

from __future__ import annotations

import numpy as np
import pytest

from napari_rpsam2.app import ClickSession, CommitError
from napari_rpsam2.app.click_commit import plan_commit, plan_undo


class Recorder:
    def __init__(self, session):
        self.messages, self.previews, self.clicks = [], [], []
        session.events.message.connect(lambda level, text: self.messages.append((level, text)))
        session.events.preview_changed.connect(self.previews.append)
        session.events.clicks_changed.connect(self.clicks.append)


def test_commit_plan_never_overwrites():
    target = np.zeros((2, 5, 5), np.int32)
    target[1, 0, :] = 7
    mask = np.zeros((5, 5), bool)
    mask[0:2, :] = True
    rec = plan_commit(target, (1,), mask)
    assert rec.label_id == 8 and rec.size == 5  # row 0 belongs to object 7
    target[rec.indices] = rec.label_id
    target[1, 1, 0] = 3  # the user paints over one committed pixel
    target[plan_undo(target, rec)] = 0
    assert (target[1, 0] == 7).all() and target[1, 1, 0] == 3 and (target[1, 1, 1:] == 0).all()
    with pytest.raises(CommitError, match="empty"):
        plan_commit(target, (0,), np.zeros((5, 5), bool))


def test_clicks_per_slice_polarity_and_outside_refused():
    session = ClickSession((3, 40, 50))
    seen = Recorder(session)
    assert session.add_click((1,), 10, 10)
    assert session.add_click((1,), 20, 5, positive=False)
    assert session.add_click((2,), 3, 4)
    assert [c.positive for c in session.clicks((1,))] == [True, False]
    assert seen.clicks == [(1,), (1,), (2,)]
    assert not session.add_click((1,), -0.6, 10)  # beyond the outer pixel's edge
    assert "outside the 40×50 image" in seen.messages[-1][1]
    assert len(session.clicks((1,))) == 2
    with pytest.raises(IndexError):
        session.add_click((3,), 1, 1)
    session.clear((1,))
    assert session.clicks((1,)) == () and len(session.clicks((2,))) == 1
    assert seen.messages[-1][0] == "info" and "No clicks" in seen.messages[-1][1]
    session.add_click((0,), 5, 5, positive=False)
    assert session.request((0,)) is None and "Only negative clicks" in seen.messages[-1][1]


def test_stale_results_are_dropped_and_commit_undo_exact(model, frame0):
    image, labels, _ = frame0
    session = ClickSession(labels.shape)
    seen = Recorder(session)
    session.add_click((), 170, 80)
    old = session.request(())
    session.add_click((), 150, 90)  # a new click while the first result is computed
    result = model.segment(image, old.points, old.labels, old.refine)
    assert not session.accept(old, result) and session.preview is None
    preview = session.segment(model, image)
    assert preview is not None and preview.mask.any() and "mask of" in seen.messages[-1][1]
    expected = model.segment(image, [[170, 80], [150, 90]], [1, 1], True).mask
    np.testing.assert_array_equal(preview.mask, expected)  # the session's preview is the engine's result
    target = np.zeros(labels.shape, np.int32)
    target[:5, :5] = 9
    before = target.copy()
    session.target = target
    record = session.commit()
    assert record.label_id == 10 and (target[before == 9] == 9).all()
    assert session.preview is None and session.clicks(()) == () and session.can_undo
    assert session.commit() is None and "Nothing to commit" in seen.messages[-1][1]
    session.undo()
    np.testing.assert_array_equal(target, before)
    assert not session.can_undo


def test_refine_toggle_invalidates_the_preview(model, frame0):
    image, labels, _ = frame0
    session = ClickSession(labels.shape)
    session.add_click((), 170, 80)
    session.segment(model, image)
    toggled = []
    session.events.refine_changed.connect(toggled.append)
    session.toggle_refine()
    assert toggled == [False] and session.preview is None
    assert session.segment(model, image).refine is False


def test_a_box_per_slice_alone_or_with_clicks_clipped_and_cleared(model, frame0):
    image, labels, _ = frame0
    session = ClickSession((2, *labels.shape))
    changed = []
    session.events.box_changed.connect(changed.append)
    h, w = labels.shape
    assert session.set_box((1,), (40, 400, -20, 100))  # dragged up-left and past the border
    assert session.box((1,)) == (0.0, 100.0, 40.0, float(w - 1)) and session.box((0,)) is None
    assert changed == [(1,)]
    request = session.request((1,))  # a box alone is enough, no click needed
    assert request.box == session.box((1,)) and request.points.shape == (0, 2)
    assert not session.set_box((0,), (h + 5, 0, h + 50, 10)) and session.box((0,)) is None  # outside: refused
    session.add_click((1,), 20, 150, positive=False)
    request = session.request((1,))
    assert request.labels.tolist() == [0] and request.box is not None  # negative click + box: fine
    preview = session.segment(model, image, (1,))
    expected = model.segment(image, [[20, 150]], [0], True, box=session.box((1,))).mask
    np.testing.assert_array_equal(preview.mask, expected)
    session.clear((1,))
    assert session.box((1,)) is None and session.clicks((1,)) == () and session.preview is None
    assert session.request((1,)) is None
