"""SAM2's refinement stages: each call is SAM2ImagePredictor's, and the run writes only into empty labels.

The SAM2 model is the session's random-weight SAM2.1-tiny; the comparisons are
on low-res logits and predicted IoU (SAM2ImagePredictor clamps its low-res
logits to ±32, so ours are clamped the same way before comparing).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_rpsam2.autoseg import GeneratorConfig, PromptGenerator, SlicePrediction, components
from napari_rpsam2.autoseg.refine import RefineOptions, low_res_mask_prompt, refine_component
from napari_rpsam2.autoseg.run import autosegment


@pytest.fixture(scope="module")
def predictor(model, frame0):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pred = SAM2ImagePredictor(model.backbone.model)
    e = model.backbone.embed_size  # the predictor's feature sizes are written for SAM2's 1024 input
    pred._bb_feat_sizes = [(4 * e, 4 * e), (2 * e, 2 * e), (e, e)]
    with torch.inference_mode():
        pred.set_image(frame0[0])
    return pred


def _prediction_from(mask: np.ndarray) -> SlicePrediction:
    """A one-class generator output: confident inside ``mask``, with some noise."""
    rng = np.random.default_rng(0)
    fg = np.where(mask, 3.0, -3.0) + rng.normal(0, 0.5, mask.shape)
    logits = np.stack([np.zeros_like(fg), fg]).astype(np.float32)
    return SlicePrediction(logits, torch.softmax(torch.from_numpy(logits), 0).numpy(), ["instrument"])


def _predictor_corners(box, image_hw, s: int) -> np.ndarray:
    """Our (top, left, bottom, right) as the predictor's (x0, y0, x1, y1) encoding the same positions.

    ``s`` is SAM2's input side (the half-pixel shift is half an input pixel, in image pixels).
    """
    h, w = image_hw
    top, left, bottom, right = box
    return np.array([left + 0.5 - w / (2 * s), top + 0.5 - h / (2 * s), right + 0.5 - w / (2 * s),
                     bottom + 0.5 - h / (2 * s)])


def _predictor_clicks(rc, image_hw, s: int) -> np.ndarray:
    h, w = image_hw
    rc = np.asarray(rc, float)
    return np.stack([rc[:, 1] + 0.5 - w / (2 * s), rc[:, 0] + 0.5 - h / (2 * s)], axis=-1)


@pytest.mark.parametrize("clicks", [False, True])
def test_each_stage_is_the_predictors_call_with_that_box_and_mask(model, frame0, predictor, clicks):
    image, labels, emb = frame0
    prediction = _prediction_from(labels > 0)
    comp = components(prediction)[0]
    obj = refine_component(model, emb, comp, prediction, RefineOptions(stages=2, clicks=clicks, refine_clicks=False))
    assert len(obj.calls) == 2
    first, second = obj.calls
    np.testing.assert_array_equal(first.box, comp.box)  # stage 1: the component's box ...
    side = model.backbone.low_res_size
    torch.testing.assert_close(first.mask_input, low_res_mask_prompt(prediction.class_logits(1), side))  # its logits
    stage1_mask = torch.nn.functional.interpolate(first.logits[None, None], size=emb.image_hw, mode="bilinear",
                                                  align_corners=False)[0, 0] > 0
    rows, cols = np.nonzero(stage1_mask.numpy())
    np.testing.assert_array_equal(second.box, [rows.min(), cols.min(), rows.max(), cols.max()])  # stage 2
    torch.testing.assert_close(second.mask_input[0, 0], first.logits)
    for call in obj.calls:
        pts = _predictor_clicks(call.clicks, emb.image_hw, predictor.model.image_size) if clicks else None
        with torch.inference_mode():
            _, ious, low = predictor.predict(point_coords=pts, point_labels=np.ones(len(pts)) if clicks else None,
                                             box=_predictor_corners(call.box, emb.image_hw, predictor.model.image_size),
                                             mask_input=call.mask_input[0].numpy(), multimask_output=False,
                                             return_logits=True)
        torch.testing.assert_close(call.logits.clamp(-32, 32), torch.as_tensor(low[0]), rtol=1e-5, atol=1e-5)
        assert call.iou == pytest.approx(float(ious[0]), rel=1e-5, abs=1e-6)
    assert not torch.equal(first.logits, second.logits)  # the second stage did change something


class _Brightness(torch.nn.Module):
    """A stand-in generator network: class 1 where the first channel is bright."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = 20 * (x[:, :1] - 0.5) * self.w
        return torch.cat([torch.zeros_like(fg), fg], dim=1)


def _bright_generator() -> PromptGenerator:
    return PromptGenerator(_Brightness(), GeneratorConfig(classes=["spot"], input_size=32))


def test_objects_are_written_only_where_the_labels_were_empty():
    image = np.zeros((2, 32, 32), np.float32)
    image[0, 4:12, 4:12] = 1.0
    image[0, 20:28, 18:30] = 1.0
    image[1, 10:20, 10:20] = 1.0
    target = np.zeros((2, 32, 32), np.int32)
    target[0, 0:8, 0:8] = 5  # an object a person made: it stays as it is
    result = autosegment(None, _bright_generator(), image, options=RefineOptions(stages=0), target=target)
    assert (result.labels[0, 0:8, 0:8] == 5).all()
    assert [(o.slice_index, o.label, o.class_name) for o in result.objects] == [
        (0, 6, "spot"), (0, 7, "spot"), (1, 8, "spot")]
    assert [o.area for o in result.objects] == [96, 64 - 16, 100]  # largest first; the overlap with 5 is left out
    assert set(np.unique(result.classes)) == {0, 1} and (result.classes[0, 4:12, 4:12] == 1).sum() == 48
    assert (result.labels[1] == 8).sum() == 100 and target.max() == 5  # the caller's array is untouched


def test_stage_one_writes_sams_mask(model, frame0):
    image, labels, emb = frame0
    gen = PromptGenerator(_Brightness(), GeneratorConfig(classes=["spot"], channels_per_slice=3, input_size=32))
    seen = []
    result = autosegment(model, gen, image, options=RefineOptions(stages=1, min_area=200),
                         progress=lambda *a: seen.append(a))
    assert result.objects and seen[-1] == ("slices", 1, 1)
    first = result.objects[0]
    assert first.score == pytest.approx(first.score) and 0 < first.area < labels.size


def test_bad_options_are_refused_before_any_work():
    with pytest.raises(ValueError, match="stages must be 0, 1 or 2"):
        RefineOptions(stages=3)
    with pytest.raises(ValueError, match="needs a model"):
        autosegment(None, _bright_generator(), np.zeros((1, 8, 8)), options=RefineOptions(stages=2))
    with pytest.raises(ValueError, match="same size"):
        autosegment(None, _bright_generator(), np.zeros((1, 8, 8)), options=RefineOptions(stages=0),
                    target=np.zeros((1, 9, 8)))


def test_only_the_chosen_slices_are_segmented():
    image = np.zeros((3, 16, 16), np.float32)
    image[:, 4:10, 4:10] = 1.0
    result = autosegment(None, _bright_generator(), image, options=RefineOptions(stages=0), slices=[1])
    assert [o.slice_index for o in result.objects] == [1]
    assert not result.labels[0].any() and not result.labels[2].any() and (result.labels[1] == 1).sum() == 36
    with pytest.raises(ValueError, match="slice 3 is outside"):
        autosegment(None, _bright_generator(), image, options=RefineOptions(stages=0), slices=[3])
