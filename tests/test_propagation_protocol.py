"""The propagation evaluation protocol on the sample stack (two frames, two seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_rpsam2.evaluation import report
from napari_rpsam2.evaluation.propagation_protocol import (draw_sequence_clicks, evaluate_propagation,
                                                            first_frames)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_objects_are_clicked_on_the_first_frame_they_appear_on():
    a = np.zeros((6, 6), int)
    b = a.copy()
    a[1:3, 1:3] = 4
    b[3:5, 3:5] = 2
    b[0, 0] = 4
    labels = {3: a, 7: b}
    assert first_frames(labels) == {2: 7, 4: 3}
    clicks = draw_sequence_clicks(labels, [0, 1, 2])
    assert clicks.shape == (3, 2, 2)
    assert all(b[int(r), int(c)] == 2 for r, c in clicks[:, 0])
    assert all(a[int(r), int(c)] == 4 for r, c in clicks[:, 1])
    assert np.array_equal(clicks, draw_sequence_clicks(labels, [0, 1, 2]))


def test_protocol_scores_every_labelled_frame_and_writes_reports(model, instrument_stack, tmp_path):
    image, labels = instrument_stack
    frames = {0: labels[0], 1: labels[1]}
    runs = []
    out = evaluate_propagation(model, image[:2], frames, clicks=2, methods=("sam2",),
                               progress=lambda *a: runs.append(a))
    assert runs[-1] == ("runs", 2, 2)
    ids = sorted(int(i) for i in np.unique(labels[:2]) if i)
    assert sorted(out["protocol"]["objects"]) == [str(i) for i in ids]
    res = out["sam2"]
    assert set(res["per_frame"]) == {"0", "1"}
    assert len(res["per_seed"]) == 2
    assert 0 <= res["mDSC"]["mean"] <= 100 and res["mHD95"]["mean"] >= 0
    assert res["per_class"][f"object {ids[0]}"]["frames"] == sum(int((labels[t] == ids[0]).any()) for t in (0, 1))
    report.write_json(out, tmp_path / "p.json")
    report.write_csv(out, tmp_path / "p.csv")
    report.write_figure(out, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "object" in (tmp_path / "p.csv").read_text()
