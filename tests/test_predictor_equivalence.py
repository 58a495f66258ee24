"""Plain SAM2 through our path gives exactly what SAM2's own ``SAM2ImagePredictor`` gives.

Same random SAM2.1-tiny weights (the session model), one non-square image
(the 256 × 320 sample frame), single positive clicks and positive/negative
pairs.  Our low-res logits and predicted IoU come from
``SAM2Backbone.decode`` (what ``RPSAM2.segment(..., refine=False)`` calls),
the predictor's from ``predict(..., return_logits=True)``.  On the CPU they
agree to the last bit (checked with tolerances of 1e-6; masks exactly).

The one convention difference: we hand out click positions as pixel
*centres*, ``x = (col + 0.5) / W`` of the image width, and give SAM2's prompt
encoder ``x·S − 0.5`` so that, after the ``+ 0.5`` it adds, it encodes
exactly ``x·S`` (``S``: SAM2's input side, 1024; the suite builds SAM2 at
256 and the predictor then works at 256 too).  The predictor takes raw pixel
coordinates ``px`` (normalised by ``W``, times ``S``) and its prompt encoder
adds the same ``0.5``, so it encodes ``px·S/W + 0.5``.  Both encode the same
position when ``px = col + 0.5 − W/(2S)``; a click given to the predictor as
``px = col`` lands ``0.5·S/W − 0.5`` input pixels away.
"""

import numpy as np
import pytest
import torch

from napari_rpsam2.model.coords import pixels_to_normalized

SINGLE = [(40.0, 60.0), (128.0, 160.0), (200.0, 300.0), (10.0, 5.0)]
PAIRS = [((128.0, 160.0), (40.0, 60.0)), ((200.0, 300.0), (130.0, 150.0))]


@pytest.fixture(scope="module")
def predictor(model, frame0):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image = frame0[0]
    pred = SAM2ImagePredictor(model.backbone.model)
    e = model.backbone.embed_size  # the predictor's feature sizes are written for SAM2's 1024 input
    pred._bb_feat_sizes = [(4 * e, 4 * e), (2 * e, 2 * e), (e, e)]
    with torch.inference_mode():
        pred.set_image(image)  # the one extra encode of this module
    return pred


def _predictor_xy(points_rc: np.ndarray, image_hw, predictor) -> np.ndarray:
    """Our pixel clicks as the predictor's ``(x, y)`` pixel input encoding the same positions."""
    h, w = image_hw
    pts, s = np.asarray(points_rc, float), predictor.model.image_size
    return np.stack([pts[:, 1] + 0.5 - w / (2 * s), pts[:, 0] + 0.5 - h / (2 * s)], axis=-1)


def _ours(model, emb, points_rc, labels, multimask):
    xy = torch.as_tensor(pixels_to_normalized(np.asarray(points_rc, float), emb.image_hw), dtype=torch.float32)
    with torch.inference_mode():
        logits, iou = model.backbone.decode(emb, xy[None], torch.as_tensor([labels]), multimask)
    return logits[0], float(iou[0])


def _theirs(predictor, points_xy, labels, multimask):
    with torch.inference_mode():
        masks, ious, low = predictor.predict(point_coords=points_xy, point_labels=np.asarray(labels),
                                             multimask_output=multimask, return_logits=True)
    best = int(np.argmax(ious))  # what we keep: SAM2's advice for one click
    return torch.as_tensor(low[best]), float(ious[best]), masks[best]


def test_the_embedding_is_the_predictors(frame0, predictor):
    emb = frame0[2]
    torch.testing.assert_close(emb.image_embed, predictor._features["image_embed"], rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(emb.high_res_feats, predictor._features["high_res_feats"]):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("click", SINGLE)
def test_single_click_logits_and_iou(model, frame0, predictor, click):
    image, _, emb = frame0
    assert emb.image_hw[0] != emb.image_hw[1]
    ours, iou = _ours(model, emb, [click], [1], True)
    theirs, their_iou, their_mask = _theirs(predictor, _predictor_xy([click], emb.image_hw, predictor), [1],
                                            True)
    torch.testing.assert_close(ours.clamp(-32, 32), theirs, rtol=1e-6, atol=1e-6)  # the predictor clamps
    assert iou == pytest.approx(their_iou, rel=1e-6, abs=1e-7)
    seg = model.segment(image, [click], refine=False)  # the public plain path: same mask and IoU
    assert seg.score == pytest.approx(their_iou, rel=1e-6, abs=1e-7)
    assert np.array_equal(seg.mask, their_mask > 0)


@pytest.mark.parametrize("pair", PAIRS)
def test_positive_negative_pairs(model, frame0, predictor, pair):
    _, _, emb = frame0
    ours, iou = _ours(model, emb, list(pair), [1, 0], False)
    theirs, their_iou, _ = _theirs(predictor, _predictor_xy(pair, emb.image_hw, predictor), [1, 0], False)
    torch.testing.assert_close(ours.clamp(-32, 32), theirs, rtol=1e-6, atol=1e-6)
    assert iou == pytest.approx(their_iou, rel=1e-6, abs=1e-7)


def test_raw_pixel_coordinates_are_half_a_pixel_off(model, frame0, predictor):
    """Handing the predictor ``px = col`` encodes another position: the logits differ."""
    _, _, emb = frame0
    click = SINGLE[1]
    ours, _ = _ours(model, emb, [click], [1], True)
    naive, _, _ = _theirs(predictor, np.array([[click[1], click[0]]]), [1], True)
    assert not torch.allclose(ours.clamp(-32, 32), naive, rtol=1e-4, atol=1e-4)


BOX = (60.0, 40.0, 200.0, 260.0)  # top, left, bottom, right in pixels


@pytest.mark.parametrize("clicks, labels", [([], []), ([(128.0, 160.0)], [1]), ([(100.0, 100.0)], [0])])
def test_a_box_with_or_without_clicks_is_the_predictors_box(model, frame0, predictor, clicks, labels):
    """``RPSAM2.segment(..., box=)`` (what the click dock sends) gives the predictor's mask and IoU for that box."""
    image, _, emb = frame0
    top, left, bottom, right = BOX
    corners = _predictor_xy([(top, left), (bottom, right)], emb.image_hw, predictor).reshape(-1)  # x0, y0, x1, y1
    with torch.inference_mode():
        xy = _predictor_xy(clicks, emb.image_hw, predictor) if clicks else None
        masks, ious, _ = predictor.predict(point_coords=xy,
                                           point_labels=np.asarray(labels) if clicks else None, box=corners,
                                           multimask_output=False)
    seg = model.segment(image, np.asarray(clicks, float).reshape(-1, 2), labels, refine=False, box=BOX)
    assert seg.score == pytest.approx(float(ious[0]), rel=1e-6, abs=1e-7)
    assert np.array_equal(seg.mask, masks[0] > 0)
