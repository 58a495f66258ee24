"""Every object is followed from its own prompts (issue: objects prompted on different slices got lost).

The stop rule counts an object's slices only from its own first prompt in a
pass's direction, an object is always tracked on its own prompted slices, and
each direction is a fixed sequence of SAM2 ``propagate_in_video`` calls.  A
small SAM2 (256-pixel input, random weights) keeps 22 frames cheap.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_rpsam2.model import FramePrompt
from napari_rpsam2.model.propagation_plan import Pass, StopRule, plan_passes
from small_sam2 import drifting_discs, small_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # SAM2's CUDA hole filling is absent on CPU

N = 22
# object 1 clicked on slice 0, object 2 on slice 6, a correction of object 1 on slice 19
PROMPTS = [FramePrompt(0, 1, points=[(21, 12)]), FramePrompt(6, 2, points=[(42, 42)]),
           FramePrompt(19, 1, points=[(21, 20)], labels=[1])]


@pytest.fixture(scope="module")
def frames():
    return drifting_discs(N)


def test_object_prompted_later_is_tracked_with_both_directions_and_a_stop_rule(frames):
    # a threshold above any score: every counted slice is "unseen", so the rule drops an object
    # two slices after it is counted (the held-out report used --direction both --stop-after 2)
    result = small_model().propagate(frames, PROMPTS, direction="both", stop_after=2, stop_threshold=1e9,
                                     refine=False)
    col = result.object_ids.index(2)
    assert np.isfinite(result.scores[6, col]) and np.isfinite(result.scores[7, col]), result.scores[:, col]
    assert result.stopped[2] == [7]  # counted from its own prompt on slice 6: 6 and 7
    # object 1: counted from slice 0 (0, 1), taken up again on its correction slice 19 (19, 20)
    assert result.stopped[1] == [1, 20]
    col1 = result.object_ids.index(1)
    assert np.isfinite(result.scores[19, col1]) and np.isnan(result.scores[21, col1])
    assert np.isnan(result.scores[2:19, col1]).all()


def test_plan_of_each_direction_is_a_sam2_call_sequence():
    prompted = [0, 6, 19]
    assert plan_passes("forward", prompted, 0, 22) == [Pass(False, range(0, 22))]
    assert plan_passes("backward", prompted, 0, 22) == [Pass(True, range(19, -1, -1))]
    assert plan_passes("both", prompted, 0, 22) == [Pass(False, range(0, 22))]  # no reverse call from 0
    both = plan_passes("both", [4, 9], 2, 12)
    assert [p.sam2_call() for p in both] == [
        {"start_frame_idx": 4, "max_frame_num_to_track": 7, "reverse": False},
        {"start_frame_idx": 4, "max_frame_num_to_track": 2, "reverse": True}]
    assert plan_passes("forward", prompted, 0, 22, from_slice=12) == [Pass(False, range(12, 22))]


def test_stop_rule_counts_each_object_from_its_own_prompt():
    rule = StopRule({1: [0, 19], 2: [6]}, [1, 2], threshold=0.0, after=2)
    seen = {}
    for t in range(22):
        seen[t] = rule.objects_at(t)
        rule.update({o: -1.0 for o in seen[t]})
    assert seen[0] == [1, 2] and seen[2] == [2] and seen[7] == [2] and seen[8] == []
    assert seen[19] == [1] and seen[20] == [1] and seen[21] == []
    assert rule.finished(range(22, 22))


def test_command_line_tracks_the_later_object_too(capsys, frames, tmp_path):
    import csv

    import tifffile

    from napari_rpsam2 import cli

    tifffile.imwrite(tmp_path / "video.tif", frames)
    (tmp_path / "p.csv").write_text("slice,object,row,col,label\n0,1,21,12,1\n6,2,42,42,1\n19,1,21,20,1\n")
    out, scores = tmp_path / "labels.tif", tmp_path / "scores.csv"
    code = cli.main(["propagate", "--images", str(tmp_path / "video.tif"), "--prompts", str(tmp_path / "p.csv"),
                     "--out", str(out), "--scores", str(scores), "--direction", "both", "--stop-after", "2",
                     "--stop-threshold", "1e9", "--no-refine", "--quiet"], model=small_model())
    stdout, err = capsys.readouterr()
    assert code == 0, err
    rows = {int(r["slice"]): r for r in csv.DictReader(scores.open())}
    assert rows[6]["object_2"] and rows[7]["object_2"] and not rows[8]["object_2"]
    assert "object 2 stopped at slice [7]" in stdout
    assert tifffile.imread(out).shape == frames.shape[:3]
