"""One undo history per label image (no Qt): plugin writes and painting markers undone newest first, redo, bounds."""

from __future__ import annotations

import numpy as np

from napari_rpsam2.app.click_session import ClickSession
from napari_rpsam2.app.label_changes import LabelChange
from napari_rpsam2.app.label_history import LabelHistory


class Painter:
    """A stand-in for a painting tool that keeps its own undo history (as napari's Labels layer does)."""

    def __init__(self, volume: np.ndarray) -> None:
        self.volume, self.done, self.undone = volume, [], []

    def paint(self, index, value) -> None:
        self.done.append((index, self.volume[index].copy(), value))
        self.volume[index] = value

    def undo(self) -> None:
        index, old, new = self.done.pop()
        self.volume[index] = old
        self.undone.append((index, old, new))

    def redo(self) -> None:
        index, old, new = self.undone.pop()
        self.volume[index] = new
        self.done.append((index, old, new))


def _write(volume: np.ndarray, index, value) -> LabelChange:
    """A plugin write: ``value`` in the box ``index`` (slices, rows, cols) where it is 0, returned as its record."""
    old = volume.copy()
    box = volume[index]
    box[box == 0] = value
    return LabelChange.of_planes([((i,), old[i], volume[i]) for i in range(len(volume))])


def _scene():
    volume = np.zeros((3, 20, 20), np.int32)
    painter = Painter(volume)
    history = LabelHistory(lambda: volume, external_undo=painter.undo, external_redo=painter.redo)
    return volume, painter, history


def test_each_undo_takes_back_the_newest_change_whoever_made_it_and_redo_replays_in_order():
    volume, painter, history = _scene()
    states = [volume.copy()]
    history.push(_write(volume, (slice(None), slice(2, 8), slice(2, 8)), 5), "propagation", owner="propagate")
    states.append(volume.copy())
    painter.paint((1, slice(4, 12), slice(4, 12)), 7)  # the person paints over the propagation
    history.mark_external()
    states.append(volume.copy())
    history.push(_write(volume, (slice(0, 1), slice(10, 16), slice(10, 16)), 9), "commit of object 9", owner="click")
    states.append(volume.copy())
    assert [s.owner for s in history.steps()] == ["propagate", "painting", "click"]

    for expected in reversed(states[:-1]):  # commit, then the painting, then the propagation
        history.undo()
        np.testing.assert_array_equal(volume, expected)
    assert history.undo() is None and not history.can_undo
    for expected in states[1:]:
        history.redo()
        np.testing.assert_array_equal(volume, expected)
    assert not history.can_redo


def test_a_new_write_clears_redo_and_callbacks_run_on_undo_and_redo():
    volume, _, history = _scene()
    calls = []
    step = history.push(_write(volume, (slice(0, 1), slice(0, 4), slice(0, 4)), 3), "run", owner="one-shot",
                        on_undo=lambda s: calls.append(("undo", s.description)),
                        on_redo=lambda s: calls.append(("redo", s.description)))
    step.on_undo.append(lambda s: calls.append(("saved", s.owner)))  # more added after the push
    assert history.latest is step and history.undo() is step and history.next_redo is step
    assert calls == [("undo", "run"), ("saved", "one-shot")]
    history.redo()
    assert calls[-1] == ("redo", "run")
    history.undo()
    history.push(_write(volume, (slice(1, 2), slice(0, 4), slice(0, 4)), 4), "other")
    assert not history.can_redo and history.redo() is None


def test_undo_keeps_pixels_painted_since_a_write():
    volume, _, history = _scene()
    history.push(_write(volume, (slice(0, 1), slice(0, 10), slice(0, 10)), 2), "commit")
    volume[0, 0, 0] = 8  # painted by a tool that keeps no history
    history.undo()
    assert volume[0, 0, 0] == 8 and not (volume == 2).any()


def test_history_stays_bounded_by_bytes_steps_and_the_painting_tools_own_limit():
    volume = np.zeros((40, 64, 64), np.int32)
    history = LabelHistory(lambda: volume, max_bytes=20_000, max_steps=5, external_limit=2)
    for i in range(8):
        history.mark_external()
    assert len(history.steps()) == 2  # older painting steps are gone from the painting tool too
    for i in range(10):
        history.push(_write(volume, (slice(i, i + 1), slice(0, 64), slice(0, 64)), i + 1), f"write {i}")
    assert len(history.steps()) <= 5 and history.nbytes <= 20_000
    assert history.steps()[-1].description == "write 9"


def test_records_cost_well_under_a_byte_per_changed_pixel():
    volume = np.zeros((20, 256, 256), np.int32)
    rr, cc = np.mgrid[:256, :256]
    disc = (rr - 128) ** 2 + (cc - 100) ** 2 < 90 ** 2
    history = LabelHistory(lambda: volume)
    old = volume.copy()
    volume[:, disc] = 3
    volume[:, 200:240, 10:250] = 4
    history.push(LabelChange.of_planes([((i,), old[i], volume[i]) for i in range(20)]), "propagation")
    changed = int((old != volume).sum())
    assert history.nbytes < 0.25 * changed  # fancy indices and values would take 24+ bytes per pixel
    history.undo()
    assert not volume.any()


def test_click_session_commits_are_steps_of_the_targets_shared_history(model, frame0):
    image, labels, _ = frame0
    target = np.zeros(image.shape[:2], np.int32)
    session = ClickSession(target.shape)
    history = LabelHistory(lambda: target)
    session.history_of = lambda t: history
    session.target = target
    rows, cols = np.nonzero(labels == 1)
    session.add_click((), float(np.median(rows)), float(np.median(cols)))
    session.segment(model, image)
    record = session.commit()
    assert history.latest.owner == "click" and history.latest.payload is record and (target == 1).any()
    undone = []
    session.events.undone.connect(undone.append)
    history.undo()  # as Ctrl-Z would: the session hears of it
    assert undone == [record] and not target.any() and not session.can_undo


def test_steps_tied_together_are_undone_and_redone_together_from_either_history_but_never_past_a_newer_step():
    from napari_rpsam2.app.label_history import undo_together

    labels, classes = np.zeros((2, 8, 8), np.int32), np.zeros((2, 8, 8), np.int32)
    h_labels, h_classes = LabelHistory(lambda: labels), LabelHistory(lambda: classes)

    def write(array, history, value):
        old = array[1].copy()
        new = old.copy()
        new[2:5, 2:5] = value
        change = LabelChange.of_planes([((1,), old, new)])
        return history.apply(change, f"write {value}")

    undo_together([(h_labels, write(labels, h_labels, 4)), (h_classes, write(classes, h_classes, 2))])
    run_labels, run_classes = labels.copy(), classes.copy()
    h_labels.undo()  # from the target: both go back
    assert not labels.any() and not classes.any()
    h_classes.redo()  # redo from the class map: both come back
    np.testing.assert_array_equal(labels, run_labels)
    np.testing.assert_array_equal(classes, run_classes)
    h_classes.undo()  # and undo from the class map
    assert not labels.any() and not classes.any()
    h_labels.redo()
    write(labels, h_labels, 9)  # a newer step on the target only
    h_classes.undo()  # the class map's run step goes; the target's newer step is not skipped over
    assert (labels[1, 2:5, 2:5] == 9).all() and not classes.any()
    assert h_labels.latest.description == "write 9"
