"""Propagation through a stack: boxes, masks, several objects, range, stop rule, dask, bad input.

Kept cheap: the sample stack's three 256×320 slices (encoded once per
session), and slice ranges so most runs decode a single slice.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_rpsam2.evaluation.metrics import dice
from napari_rpsam2.model import FramePrompt, PromptError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # SAM2's CUDA hole filling is absent on CPU


def _centre(mask: np.ndarray) -> tuple[int, int]:
    pixels = np.argwhere(mask)
    return tuple(pixels[len(pixels) // 2])


def test_box_prompt_gives_what_segment_gives_and_range_limits_the_run(model, instrument_stack):
    image, _ = instrument_stack
    box = (90, 60, 170, 200)
    result = model.propagate(image, [FramePrompt(0, 7, box=box)], start=0, stop=1)
    single = model.segment(image[0], [], box=box, refine=False)
    assert result.tracked.tolist() == [True, False, False]
    assert not result.labels[1:].any()
    assert np.array_equal(result.labels[0] == 7, single.mask)
    assert single.mask.any()


def test_segment_box_with_a_click_differs_from_the_box_alone(model, instrument_stack):
    image, labels = instrument_stack
    box = (90, 60, 170, 200)
    alone = model.segment(image[0], [], box=box, refine=False)
    with_click = model.segment(image[0], [(100, 70)], [0], box=box, refine=False)
    assert with_click.points.shape == (1, 2)
    assert not np.array_equal(alone.mask, with_click.mask)


def test_mask_prompt_is_kept_on_its_slice(model, instrument_stack):
    image, labels = instrument_stack
    gt = labels[1] == labels[1].max()
    result = model.propagate(image, [FramePrompt(1, 5, mask=gt)], start=1, stop=2)
    assert result.tracked.tolist() == [False, True, False]
    assert dice(result.labels[1] == 5, gt) > 0.95


def test_several_objects_on_a_dask_stack_read_one_slice_at_a_time(model, instrument_stack):
    da = pytest.importorskip("dask.array")
    image, labels = instrument_stack
    reads = []

    class Counting:  # an array-like that records which slices are read
        shape, dtype, ndim = image.shape, image.dtype, image.ndim

        def __getitem__(self, index):
            reads.append(index)
            return image[index]

    stack = da.from_array(Counting(), chunks=(1, *image.shape[1:]))
    ids = [int(i) for i in np.unique(labels[0]) if i][:2]
    prompts = [FramePrompt(0, 10 + k, mask=labels[0] == i) for k, i in enumerate(ids)]
    seen = []
    result = model.propagate(stack, prompts, direction="forward", start=0, stop=2,
                             on_frame=lambda t, lab: seen.append((t, set(np.unique(lab)))))
    assert [t for t, _ in seen] == [0, 1]
    assert seen[0][1] == {0, 10, 11}
    assert result.object_ids == (10, 11)
    assert result.scores.shape == (3, 2) and np.isfinite(result.scores[:2]).all()
    assert np.isnan(result.scores[2]).all()
    assert all(np.shape(image[0]) == np.shape(np.asarray(image[r]))[-3:] for r in reads)
    assert {10, 11} <= set(np.unique(result.labels[1]))


def test_stop_rule_drops_an_object_the_model_stops_seeing(model, instrument_stack):
    image, labels = instrument_stack
    gt = labels[0] == labels[0].max()
    progress = []
    # a threshold above any score: the object counts as unseen on every slice
    result = model.propagate(image, [FramePrompt(0, 3, mask=gt)], direction="forward",
                             stop_threshold=1e9, stop_after=2, progress=lambda *a: progress.append(a))
    assert result.stopped == {3: [1]}
    assert result.tracked.tolist() == [True, True, False]
    assert not result.labels[2].any()
    assert progress[-1] == ("frames", 3, 3)


def test_refined_clicks_are_reported(moving_model, instrument_stack):
    image, labels = instrument_stack
    click = _centre(labels[0] == labels[0].max())
    result = moving_model.propagate(image, [FramePrompt(0, 1, points=[click])], start=0, stop=1)
    plain = moving_model.propagate(image, [FramePrompt(0, 1, points=[click])], start=0, stop=1, refine=False)
    (used,) = result.prompts
    assert not np.allclose(used.points[0], click)
    assert np.allclose(plain.prompts[0].points[0], click)
    expected = moving_model.segment(image[0], [click], refine=True).mask
    assert np.array_equal(result.labels[0] == 1, expected)


@pytest.mark.parametrize("prompts, kwargs, message", [
    ([FramePrompt(2, 1, box=(1, 1, 5, 5))], {"start": 0, "stop": 2}, "outside the range"),
    ([FramePrompt(0, 1, box=(5, 5, 1, 1))], {}, "bottom above top"),
    ([FramePrompt(0, 1, box=(0, 0, 400, 5))], {}, "outside the"),
    ([FramePrompt(0, 0, box=(1, 1, 5, 5))], {}, "positive"),
    ([FramePrompt(9, 1, box=(1, 1, 5, 5))], {}, "slices 0 to 2"),
    ([FramePrompt(0, 1, mask=np.zeros((256, 320)))], {}, "empty"),
    ([FramePrompt(0, 1, mask=np.ones((5, 5)))], {}, "shape"),
    ([], {}, "no prompts"),
    ([FramePrompt(0, 1, box=(1, 1, 5, 5))], {"start": 2, "stop": 1}, "range"),
])
def test_bad_prompts_say_what_is_wrong(model, instrument_stack, prompts, kwargs, message):
    image, _ = instrument_stack
    with pytest.raises(PromptError, match=message):
        model.propagate(image, prompts, **kwargs)


def test_bad_direction_is_refused(model, instrument_stack):
    image, labels = instrument_stack
    with pytest.raises(ValueError, match="direction"):
        model.propagate(image, [FramePrompt(0, 1, mask=labels[0] > 0)], direction="sideways")


def test_outputs_beyond_sam2s_memory_window_are_dropped_but_conditioning_ones_stay(model, instrument_stack):
    image, _ = instrument_stack
    session = model.propagation_session(np.repeat(image[:1], 80, axis=0))  # nothing is encoded yet
    window = session.predictor.memory_window()
    assert window == max(session.predictor.num_maskmem, session.predictor.max_obj_ptrs_in_encoder)
    outputs = {"cond_frame_outputs": {0: {}}, "non_cond_frame_outputs": {k: {} for k in range(1, 80)}}
    session.state["output_dict_per_obj"] = {0: outputs}
    session._forget_far_outputs(79)
    near_prompt = set(range(1, window + 1))
    near_current = set(range(79 - window, 80))
    assert set(outputs["non_cond_frame_outputs"]) == near_prompt | near_current
    assert set(outputs["cond_frame_outputs"]) == {0}
