"""Our propagation equals SAM2's own ``SAM2VideoPredictor.propagate_in_video``.

Same random weights (the session model's state dict loaded into a predictor
built by ``build_sam2_video_predictor``), same preprocessed frames (the
predictor's ``images`` are replaced by our encoder's input tensors, so both
sides see identical pixels), one object from one click: forward, backward, and
forward again after a correction click on a later frame.

Tolerance: at most 0.1 % of a frame's pixels may differ (the click reaches
SAM2's prompt encoder through two float32 roundings of the same position);
in practice the masks are identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_rpsam2.model import FramePrompt
from sam2_reference import sam2_points, sam2_video_reference

N_FRAMES, SIZE = 3, 128
MAX_DIFFERENT = 0.001


def _frames() -> np.ndarray:
    """A bright disc drifting right over a textured background."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = np.zeros((N_FRAMES, SIZE, SIZE, 3), np.uint8)
    for t in range(N_FRAMES):
        base = 60 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 6, (SIZE, SIZE))
        disc = (yy - 64) ** 2 + (xx - 40 - 8 * t) ** 2 < 22 ** 2
        img = np.where(disc, 210, base)
        out[t] = np.clip(np.stack([img, img * 0.8, img * 0.6], -1), 0, 255).astype(np.uint8)
    return out


def _sam2_click(predictor, state, frame, rc):
    predictor.add_new_points_or_box(state, frame, 1, points=sam2_points(predictor, [rc], SIZE), labels=[1])


def _sam2_run(predictor, state, reverse=False) -> dict[int, np.ndarray]:
    with torch.inference_mode():
        return {t: (m[0, 0] > 0).numpy() for t, _, m in predictor.propagate_in_video(state, reverse=reverse)}


def _assert_same(ours, theirs: dict[int, np.ndarray]) -> None:
    assert sorted(np.flatnonzero(ours.tracked)) == sorted(theirs)
    for t, mask in theirs.items():
        different = np.mean((ours.labels[t] == 1) != mask)
        print(f"frame {t}: {different:.4%} of pixels differ, {mask.mean():.1%} foreground")
        assert different <= MAX_DIFFERENT, f"frame {t}: {different:.2%} of pixels differ"
    assert any(m.any() for m in theirs.values())  # not an all-empty comparison


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_propagation_equals_sam2_video_predictor(model, tmp_path):
    frames = _frames()
    predictor, state = sam2_video_reference(model, frames, tmp_path)
    session = model.propagation_session(frames)

    session.add([FramePrompt(1, 1, points=[(64, 48)])], refine=False)
    with torch.inference_mode():
        _sam2_click(predictor, state, 1, (64, 48))
    _assert_same(session.run("forward"), _sam2_run(predictor, state))
    _assert_same(session.run("backward"), _sam2_run(predictor, state, reverse=True))

    # a correction click on a later, already tracked frame re-conditions the object from there
    session.add([FramePrompt(2, 1, points=[(64, 62)])], refine=False)
    with torch.inference_mode():
        _sam2_click(predictor, state, 2, (64, 62))
    _assert_same(session.run("forward"), _sam2_run(predictor, state))
