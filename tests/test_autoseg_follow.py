"""Following the generator's objects through a stack with SAM2's memory (``RefineOptions(follow=True)``).

The stack: two discs on a textured background, one (A) on slices 1–5 moving
right and growing, bright and largest on slice 4, dimmer but larger on slice 5;
one (B) on slices 5–9, largest on slice 7.  A stand-in generator calls a pixel
class 1 where it is bright, so its probability maps are known.  SAM2 is the
small random-weight SAM2.1-tiny (256 input): what it tracks means nothing, so
the tests check what does not depend on its weights (the key slices, the ids,
what is written where) and, for the tracking itself, equality with SAM2's own
video predictor on mask logits and object scores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_rpsam2 import jobs
from napari_rpsam2.autoseg import GeneratorConfig, PromptGenerator
from napari_rpsam2.autoseg.follow import FollowOptions, key_slices, stack_class_maps
from napari_rpsam2.autoseg.generator import normalise_stack
from napari_rpsam2.autoseg.refine import RefineOptions
from napari_rpsam2.autoseg.run import autosegment
from napari_rpsam2.model.propagation import PropagationSession
from small_sam2 import small_model
from sam2_reference import sam2_video_reference
from test_propagation_equivalence_objects import RTOL, WINDOW, _sam2_pass

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # SAM2's CUDA hole filling is absent on CPU

N, SIZE = 10, 64
A = {1: (6, 250), 2: (8, 250), 3: (10, 250), 4: (12, 250), 5: (13, 140)}  # slice: (radius, brightness)
B = {5: (8, 250), 6: (9, 250), 7: (11, 250), 8: (9, 250), 9: (8, 250)}


def _discs() -> tuple[np.ndarray, np.ndarray]:
    """``(N, SIZE, SIZE)`` uint8 grey frames and the disc ids drawn (1 A, 2 B)."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    frames = np.zeros((N, SIZE, SIZE), np.uint8)
    truth = np.zeros((N, SIZE, SIZE), np.int32)
    for t in range(N):
        img = 50 + 25 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 4, (SIZE, SIZE))
        for ident, discs, (row, col, step) in ((1, A, (18, 14, 2)), (2, B, (46, 44, -2))):
            if t in discs:
                radius, value = discs[t]
                inside = (yy - row) ** 2 + (xx - col - step * t) ** 2 < radius ** 2
                img[inside], truth[t][inside] = value, ident
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames, truth


class _Bright(torch.nn.Module):
    """A stand-in generator network: class 1 where the slice is bright (log-odds 20·(x − 0.5))."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = 20 * (x[:, :1] - 0.5) * self.w
        return torch.cat([torch.zeros_like(fg), fg], dim=1)


def _generator() -> PromptGenerator:
    return PromptGenerator(_Bright(), GeneratorConfig(classes=["disc"], input_size=SIZE))


@pytest.fixture(scope="module")
def sam2():
    return small_model(*WINDOW)


def test_each_disc_gets_one_key_slice_where_mean_probability_times_area_is_largest():
    frames, truth = _discs()
    cmaps, conf = stack_class_maps(_generator(), normalise_stack(frames, False), range(N))
    keys = key_slices(cmaps, conf, 1, min_area=16)
    # A: slice 5's disc is larger than slice 4's but dim (p ≈ 0.6); B: slice 7 is its largest
    assert [(k.slice_index, k.extent) for k in keys] == [(4, (1, 5)), (7, (5, 9))]
    assert (keys[0].component.mask == (truth[4] == 1)).mean() > 0.99
    assert (truth[5] == 1).sum() > (truth[4] == 1).sum()  # an area-only rule would have picked slice 5
    assert keys[0].confidence > keys[1].confidence and 0.95 < keys[0].component.score <= 1
    # a shifted range: the same slices, counted in the stack
    cmaps, conf = stack_class_maps(_generator(), normalise_stack(frames, False), range(3, N))
    assert [k.slice_index for k in key_slices(cmaps, conf, 1, min_area=16, first=3)] == [4, 7]


def test_following_gives_each_object_one_id_and_never_writes_over_existing_labels(sam2):
    frames, truth = _discs()
    target = np.zeros((N, SIZE, SIZE), np.int32)
    target[2:4, 10:20, 5:25] = 9  # a person's object across part of A on slices 2–3
    target[0, :8, :8] = 3
    seen: list[tuple] = []
    result = autosegment(sam2, _generator(), frames, options=RefineOptions(stages=0, follow=True), target=target,
                         rgb=False, progress=lambda *a: seen.append(a))
    assert [(o.slice_index, o.label, o.class_name) for o in result.objects] == [(4, 10, "disc"), (7, 11, "disc")]
    kept = target != 0
    assert (result.labels[kept] == target[kept]).all() and target.max() == 9  # the caller's array untouched
    new = result.labels > 9
    assert set(np.unique(result.labels[new])) == {10, 11}  # one id per object, on every slice it reached
    assert (result.classes[new] == 1).all() and not result.classes[~new].any()
    for obj in result.objects:
        first, last = obj.slices
        assert first <= obj.slice_index <= last and obj.area == (result.labels == obj.label).sum()
        on = np.flatnonzero((result.labels == obj.label).any(axis=(1, 2)))
        assert on[0] == first and on[-1] == last
    a_key = result.labels[4] == 10  # the key slice holds the prompt mask (SAM2 returns a mask prompt as is)
    disc = truth[4] == 1
    assert (a_key & disc).sum() / (a_key | disc).sum() > 0.9
    stages = [s for s, *_ in seen]
    assert stages.index("slices") < stages.index("key slices") < stages.index("objects")
    assert seen[-1] == ("objects", 2, 2)


def test_what_the_tracker_follows_is_written_with_one_id_per_object_on_every_slice(sam2, monkeypatch):
    """A tracker that follows each disc exactly (random SAM2 cannot): the labels are the discs, one id each."""
    from napari_rpsam2.model.propagation import PropagationResult

    frames, truth = _discs()
    disc_at_key = {4: 1, 7: 2}

    def perfect(self, direction, start, stop, *, from_slice, objects, **_):
        (oid,) = objects
        labels = np.where(truth == disc_at_key[from_slice], oid, 0).astype(np.int32)
        return PropagationResult(labels, np.zeros((N, 1), np.float32), (oid,), np.ones(N, bool))

    monkeypatch.setattr(PropagationSession, "run", perfect)
    target = np.zeros((N, SIZE, SIZE), np.int32)
    target[5, :32] = 7  # a person's object over A on slice 5
    result = autosegment(sam2, _generator(), frames, options=RefineOptions(stages=0, follow=True), target=target,
                         rgb=False)
    want = np.where(target > 0, 7, np.where(truth == 1, 8, np.where(truth == 2, 9, 0)))
    assert (result.labels == want).all()
    assert [(o.slice_index, o.label, o.slices) for o in result.objects] == [(4, 8, (1, 4)), (7, 9, (5, 9))]
    assert [o.area for o in result.objects] == [int((want == 8).sum()), int((truth == 2).sum())]
    assert (result.classes == (want > 7)).all()


def test_an_object_already_labelled_on_its_key_slice_is_not_followed(sam2):
    frames, truth = _discs()
    target = np.where(truth[7] == 2, 4, 0)[None].repeat(N, 0).astype(np.int32)  # B labelled by a person
    target[:7] = 0
    target[8:] = 0
    result = autosegment(sam2, _generator(), frames, options=RefineOptions(stages=0, follow=True), target=target,
                         rgb=False)
    assert [(o.slice_index, o.label) for o in result.objects] == [(4, 5)]
    assert (result.labels[7][truth[7] == 2] == 4).all()


def test_following_needs_sam2_and_a_cancel_writes_nothing(sam2):
    frames, _ = _discs()
    with pytest.raises(ValueError, match="needs SAM2"):
        autosegment(None, _generator(), frames, options=RefineOptions(stages=0, follow=True), rgb=False)
    with pytest.raises(ValueError, match="direction"):
        FollowOptions(direction="sideways")
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 30  # during the tracking

    target = np.zeros((N, SIZE, SIZE), np.int32)
    with pytest.raises(jobs.Cancelled):
        autosegment(sam2, _generator(), frames, options=RefineOptions(stages=0, follow=True), target=target,
                    rgb=False, cancel=cancel)
    assert not target.any()


def test_following_an_object_equals_sam2_video_predictor_from_its_key_slice(sam2, tmp_path, monkeypatch):
    """Each object's tracking = a fresh ``SAM2VideoPredictor`` given its key-slice mask, forward then reverse."""
    frames, _ = _discs()
    runs = []
    real_run = PropagationSession.run

    def spy(self, *args, **kwargs):
        frames_seen: list = []
        result = real_run(self, *args, on_logits=lambda t, logits: frames_seen.append((t, logits)), **kwargs)
        runs.append((kwargs["objects"], kwargs["from_slice"], frames_seen, result))
        return result

    monkeypatch.setattr(PropagationSession, "run", spy)
    autosegment(sam2, _generator(), frames, options=RefineOptions(stages=0, follow=True),
                follow=FollowOptions(stop_after=None), rgb=False)
    keys = key_slices(*stack_class_maps(_generator(), normalise_stack(frames, False), range(N)), 1)
    assert [(objects, start) for objects, start, *_ in runs] == [([1], 4), ([2], 7)]
    predictor, state = sam2_video_reference(sam2, frames, tmp_path, WINDOW)
    worst = []
    for (objects, start, ours, result), ks in zip(runs, keys):
        oid = objects[0]
        with torch.inference_mode():
            predictor.reset_state(state)
            predictor.add_new_mask(state, ks.slice_index, oid, ks.component.mask)
        theirs = list(_sam2_pass(predictor, state, start_frame_idx=start).items())
        theirs += list(_sam2_pass(predictor, state, start_frame_idx=start, reverse=True).items())
        assert [t for t, _ in ours] == [t for t, _ in theirs], "not the same slices in the same order"
        for (t, logits), (_, (their_logits, their_scores)) in zip(ours, theirs):
            a, b = logits[oid], their_logits[oid]
            gap = float(np.max(np.abs(a - b) / (1 + np.abs(b))))
            worst.append(gap)
            assert gap <= RTOL, f"object {oid}, slice {t}: mask logits differ by {gap:.2e} (relative)"
        first = dict(reversed(theirs))  # a slice tracked twice (the key slice) keeps its first visit's score
        col = result.object_ids.index(oid)
        for t in np.flatnonzero(result.tracked):
            ours_score, their_score = float(result.scores[t, col]), first[t][1][oid]
            assert abs(ours_score - their_score) <= RTOL * (1 + abs(their_score)), f"slice {t}: object score"
        assert any((lg[oid] > 0).any() for _, lg in ours)
    print(f"largest relative logit difference: {max(worst):.2e}")
