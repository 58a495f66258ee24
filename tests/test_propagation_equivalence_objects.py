"""Several objects, prompts on different slices, a correction, dropped memory: equal to SAM2's own predictor.

SAM2's ``SAM2VideoPredictor`` is built from the same config and random weights
(a 256-pixel input; ``max_obj_ptrs_in_encoder=4`` so that the memory window is
7 slices and an 18-slice run drops outputs), its frames replaced by our
encoder's input tensors.  Object 1 is clicked on slice 0, object 2 on slice 2;
forward over all slices; a correction of object 1 on slice 15 (whose memory
the forward run had partly dropped); forward again from slice 15 (object 1
only: SAM2 tracks each object on its own); backward from the latest prompt.
Each of our passes is compared with the matching ``propagate_in_video`` call
on per-object mask logits (at the stack's resolution) and object-score logits.

Tolerance: |Δ logit| ≤ 1e-4 · (1 + |logit|) everywhere (measured: 3.5e-7), and the same for the
object scores.  The two sides differ only in how a click's position is
rounded on its way to SAM2's prompt encoder (float64 then float32 here,
float32 there) and in the order of a few float32 operations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_rpsam2.model import FramePrompt
from sam2_reference import sam2_points, sam2_video_reference
from small_sam2 import drifting_discs, small_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # SAM2's CUDA hole filling is absent on CPU

N, SIZE = 18, 64
WINDOW = ("++model.max_obj_ptrs_in_encoder=4",)
RTOL = 1e-4
CLICKS = {(0, 1): [(21, 12)], (2, 2): [(42, 46)]}
CORRECTION = (15, 1, [(21, 28)], [0])  # slice, object, points, labels


def _sam2_pass(predictor, state, **call) -> dict[int, tuple[dict, dict]]:
    """``frame -> ({object: logits}, {object: score})`` as one ``propagate_in_video`` call yields them."""
    out = {}
    with torch.inference_mode():
        for t, ids, masks in predictor.propagate_in_video(state, **call):
            scores = {}
            for i, oid in enumerate(ids):
                outputs = state["output_dict_per_obj"][i]
                o = outputs["cond_frame_outputs"].get(t) or outputs["non_cond_frame_outputs"][t]
                scores[oid] = float(o["object_score_logits"].float().reshape(-1)[0])
            out[t] = ({oid: masks[i, 0].float().numpy() for i, oid in enumerate(ids)}, scores)
    return out


def _our_pass(session, *args, **kwargs) -> dict[int, tuple[dict, dict]]:
    seen = {}
    result = session.run(*args, on_logits=lambda t, logits: seen.__setitem__(t, logits), **kwargs)
    cols = {oid: k for k, oid in enumerate(result.object_ids)}
    return {t: (logits, {o: float(result.scores[t, cols[o]]) for o in logits}) for t, logits in seen.items()}


def _assert_equal(ours, theirs, objects, worst):
    assert list(ours) == list(theirs), "not the same frames in the same order"
    for t in theirs:
        for o in objects:
            a, b = ours[t][0][o], theirs[t][0][o]
            gap = float(np.max(np.abs(a - b) / (1 + np.abs(b))))
            worst.append(gap)
            assert gap <= RTOL, f"slice {t}, object {o}: mask logits differ by {gap:.2e} (relative)"
            sa, sb = ours[t][1][o], theirs[t][1][o]
            assert abs(sa - sb) <= RTOL * (1 + abs(sb)), f"slice {t}, object {o}: score {sa} vs {sb}"
    assert any((theirs[t][0][o] > 0).any() for t in theirs for o in objects)  # not all-background


def test_several_objects_with_a_correction_equal_sam2_video_predictor(tmp_path):
    model = small_model(*WINDOW)
    frames = drifting_discs(N, SIZE)
    predictor, state = sam2_video_reference(model, frames, tmp_path, WINDOW)
    session = model.propagation_session(frames)
    assert session.predictor.memory_window() == 7 < N // 2
    worst: list[float] = []

    session.add([FramePrompt(t, o, points=p) for (t, o), p in CLICKS.items()], refine=False)
    with torch.inference_mode():
        for (t, o), p in CLICKS.items():
            predictor.add_new_points_or_box(state, t, o, points=sam2_points(predictor, p, SIZE), labels=[1])
    _assert_equal(_our_pass(session, "forward"), _sam2_pass(predictor, state), (1, 2), worst)
    held = session.state["output_dict_per_obj"][0]["non_cond_frame_outputs"]
    assert len(held) < N - 1, "the run was meant to drop outputs beyond SAM2's memory window"

    t, o, points, labels = CORRECTION
    session.add([FramePrompt(t, o, points=points, labels=labels)], refine=False)
    with torch.inference_mode():
        predictor.add_new_points_or_box(state, t, o, points=sam2_points(predictor, points, SIZE), labels=labels)
    _assert_equal(_our_pass(session, "forward", from_slice=t, objects=[o]),
                  _sam2_pass(predictor, state, start_frame_idx=t), (o,), worst)
    _assert_equal(_our_pass(session, "backward"),
                  _sam2_pass(predictor, state, start_frame_idx=t, reverse=True), (1, 2), worst)
    print(f"largest relative logit difference: {max(worst):.2e}")
