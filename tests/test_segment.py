"""Prompt → mask through the real SAM2 decoder (random tiny weights)."""

import numpy as np
import pytest
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.model import PromptError
from napari_rpsam2.model.coords import pixels_to_normalized


def _inside(labels, obj, n, seed=0):
    rows, cols = np.nonzero(labels == obj)
    idx = np.random.default_rng(seed).integers(0, len(rows), n)
    return np.stack([rows[idx], cols[idx]], axis=1).astype(float)


def test_fresh_shift_block_gives_plain_sam2(model, frame0):
    image, labels, _ = frame0
    for click in _inside(labels, 1, 3):
        refined = model.segment(image, [click], refine=True)
        plain = model.segment(image, [click], refine=False)
        assert np.array_equal(refined.mask, plain.mask)
        np.testing.assert_allclose(refined.points, plain.points, atol=1e-6)
        assert refined.score == pytest.approx(plain.score)


def test_mask_has_the_image_size_and_points_are_echoed(model, frame0):
    image, labels, emb = frame0
    res = model.segment(image, _inside(labels, 2, 1), refine=False)
    assert res.mask.shape == image.shape[:2] and res.mask.dtype == bool
    assert res.points.shape == (1, 2)
    assert 0.0 <= res.score <= 1.5


def test_chunked_decoding_equals_one_by_one(model, frame0):
    image, labels, emb = frame0
    clicks = _inside(labels, 1, 7, seed=3)
    chunked = []
    for sl, xy, logits, iou in model.iter_single_clicks(emb, clicks, refine=False, chunk_size=3):
        chunked.append((logits, iou))
    logits = torch.cat([c[0] for c in chunked])
    ious = torch.cat([c[1] for c in chunked])
    assert logits.shape[0] == 7
    for i, click in enumerate(clicks):
        xy = torch.as_tensor(pixels_to_normalized(click[None], emb.image_hw), dtype=torch.float32)
        with torch.no_grad():
            one, one_iou = model.backbone.decode(emb, xy[None], torch.ones(1, 1), multimask=True)
        torch.testing.assert_close(logits[i], one[0], atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(ious[i], one_iou[0], atol=1e-5, rtol=1e-5)


def test_chunked_masks_match_segment(model, frame0):
    image, labels, emb = frame0
    clicks = _inside(labels, 2, 2, seed=5)
    from napari_rpsam2.model.backbone import logits_to_image

    for _, _, logits, _ in model.iter_single_clicks(emb, clicks, refine=True, chunk_size=8):
        masks = logits_to_image(logits, emb.image_hw) > 0
    for i, click in enumerate(clicks):
        assert np.array_equal(masks[i].numpy(), model.segment(image, [click]).mask)


def test_gradient_reaches_the_click_coordinates(model, frame0):
    _, labels, emb = frame0
    xy = torch.as_tensor(pixels_to_normalized(_inside(labels, 1, 4), emb.image_hw),
                         dtype=torch.float32).requires_grad_(True)
    # plain decoder path
    logits, iou = model.backbone.decode(emb, xy[:, None], torch.ones(4, 1), multimask=True)
    torch.sigmoid(logits).mean().backward()
    assert xy.grad is not None and torch.isfinite(xy.grad).all() and xy.grad.abs().sum() > 0
    # through the shift block as well: gradients reach the block's parameters
    trainable = RPSAM2(model.backbone, cache=model.cache)
    trainable.shift_block.train()
    ctx = trainable.shift_block.image_context(emb.image_embed)
    moved = trainable.refine_normalized(emb, xy.detach(), ctx)
    logits, _ = model.backbone.decode(emb, moved[:, None], torch.ones(4, 1), multimask=True)
    torch.sigmoid(logits).mean().backward()
    grad = trainable.shift_block.offset_head.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.model.parameters()), "backbone must stay frozen"


def test_second_click_on_cached_slice_never_runs_the_encoder(model, frame0, monkeypatch):
    image, labels, _ = frame0
    calls = []
    monkeypatch.setattr(model.backbone, "encode", lambda rgb: calls.append(1))
    for click in _inside(labels, 1, 3, seed=9):
        model.segment(image, [click], refine=True)
    assert calls == []


def test_negative_clicks_change_the_mask_and_are_never_moved(model, frame0):
    image, labels, _ = frame0
    moved = RPSAM2(model.backbone, cache=model.cache)
    with torch.no_grad():
        torch.manual_seed(0)
        moved.shift_block.offset_head.weight.normal_(0, 1.0)
    pos = _inside(labels, 1, 1)
    neg = _inside(labels, 2, 1)
    res = moved.segment(image, np.concatenate([pos, neg]), labels=[1, 0])
    np.testing.assert_array_equal(res.points[1], neg[0])
    assert not np.allclose(res.points[0], pos[0]), "the positive click should have moved"
    only_pos = moved.segment(image, pos, refine=True, multimask=False)
    assert not np.array_equal(only_pos.mask, res.mask)


def test_multimask_choice_follows_predicted_iou(model, frame0):
    _, labels, emb = frame0
    xy = torch.as_tensor(pixels_to_normalized(_inside(labels, 1, 2, seed=11), emb.image_hw),
                         dtype=torch.float32)
    m = model.backbone.model
    with torch.no_grad():
        coords = xy[:, None] * model.backbone.input_size - 0.5
        sparse, dense = m.sam_prompt_encoder(points=(coords, torch.ones(2, 1, dtype=torch.int)),
                                             boxes=None, masks=None)
        all_masks, all_iou, _, _ = m.sam_mask_decoder(
            image_embeddings=emb.image_embed, image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
            repeat_image=True, high_res_features=emb.high_res_feats)
        chosen, iou = model.backbone.decode(emb, xy[:, None], torch.ones(2, 1), multimask=True)
    best = all_iou.argmax(1)
    torch.testing.assert_close(iou, all_iou[torch.arange(2), best])
    torch.testing.assert_close(chosen, all_masks[torch.arange(2), best])


def test_clicks_outside_the_image_get_a_clear_message(model, frame0):
    image, _, _ = frame0
    with pytest.raises(PromptError, match="outside the 256×320 image"):
        model.segment(image, [[300, 10]])
    with pytest.raises(PromptError, match="no clicks"):
        model.segment(image, np.zeros((0, 2)))
    with pytest.raises(PromptError, match="labels"):
        model.segment(image, [[10, 10]], labels=[1, 1])
