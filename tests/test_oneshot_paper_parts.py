"""The one-shot methods' paper parts on synthetic features where the expected effect is known.

PerSAM's target-guided attention and semantic prompting (measured inside
SAM2's decoder), P²SAM's natural-image negative, Med-PerSAM's highest-logit
rule, organ-type prompt counts and kernel.  Decoder tests reuse the session's
one embedding (``frame0``); nothing here encodes a slice.
"""

import numpy as np
import pytest
import torch

from napari_rpsam2.oneshot import MedPerSAM, P2SAM, PerSAM
from napari_rpsam2.oneshot.guidance import DecoderGuidance
from napari_rpsam2.oneshot.medpersam import highest_logit, retrain_steps
from napari_rpsam2.oneshot.medprompts import candidate_regions, subregion_prompts
from napari_rpsam2.oneshot.p2sam import part_prompts
from napari_rpsam2.oneshot.passes import decode, three_passes
from napari_rpsam2.oneshot.registration import WarpConfig
from napari_rpsam2.oneshot.retrieval import cell_cloud, earth_movers_distance

POINTS, LABELS = np.array([[120.0, 150.0], [5.0, 5.0]]), np.array([1, 0])


def _square_map(grid: int) -> tuple[np.ndarray, np.ndarray]:
    """A similarity map high on one square (far from the clicks), low and noisy elsewhere.

    The square is rows 40–52, columns 8–20 of a 64-cell grid, scaled to the model's grid.
    """
    rows, cols = slice(grid * 40 // 64, grid * 52 // 64), slice(grid * 8 // 64, grid * 20 // 64)
    rng = np.random.default_rng(0)
    sim = 0.1 * rng.random((grid, grid)).astype(np.float32)
    region = np.zeros((grid, grid), bool)
    region[rows, cols] = True
    sim[region] += 0.8
    return sim, region


def test_target_guided_attention_raises_the_decoders_attention_on_the_similar_region(model, frame0):
    _, _, emb = frame0
    h, w = emb.image_embed.shape[-2:]
    sim, region = _square_map(h)
    plain = DecoderGuidance(record=True)  # explicit attention, nothing changed
    guided = DecoderGuidance(similarity=sim, record=True)
    out_plain = decode(model, emb, POINTS, LABELS, guidance=plain)
    out_guided = decode(model, emb, POINTS, LABELS, guidance=guided)
    n_maps = len(model.backbone.model.sam_mask_decoder.transformer.layers) + 1
    assert len(plain.attention) == len(guided.attention) == n_maps  # every token-to-image attention
    flat = torch.as_tensor(region.ravel())
    for a, b in zip(plain.attention, guided.attention):
        before, after = a[..., flat].sum(-1), b[..., flat].sum(-1)  # attention mass on the region, per token/head
        assert torch.all(after > before)
        assert after.mean() > 1.5 * before.mean()
    assert not torch.allclose(out_plain.logits, out_guided.logits)  # and the masks change with it


def test_semantic_prompting_adds_the_target_embedding_to_every_decoder_token(model, frame0):
    _, _, emb = frame0
    target = torch.linspace(-1, 1, emb.image_embed.shape[1])
    plain, semantic = DecoderGuidance(record=True), DecoderGuidance(embedding=target, record=True)
    decode(model, emb, POINTS, LABELS, guidance=plain)
    decode(model, emb, POINTS, LABELS, guidance=semantic)
    (before,), (after,) = plain.tokens, semantic.tokens
    assert before.shape[1] > len(POINTS)  # SAM2's output tokens and the prompt tokens
    torch.testing.assert_close(after - before, target.expand_as(before))


def test_persam_parts_off_is_sam2s_decoder_bit_for_bit_and_the_decoder_is_restored(model, frame0):
    image, labels, emb = frame0
    reference = [three_passes(model, emb, POINTS, LABELS)]
    off = PerSAM(model, guided_attention=False, semantic_prompt=False)
    on = PerSAM(model)
    for method in (off, on):
        method.set_reference(image, labels, [1])
    obj_off, obj_on = off.segment(image, 0).objects[0], on.segment(image, 0).objects[0]
    plain = three_passes(model, emb, obj_off.decoded_points, obj_off.labels)[-1]
    assert np.array_equal(obj_off.mask, plain.mask) and obj_off.score == plain.score
    assert obj_on.info["guided_attention"] and obj_on.info["semantic_prompt"]
    assert not (np.array_equal(obj_on.mask, obj_off.mask) and obj_on.score == obj_off.score)
    decoder = model.backbone.model.sam_mask_decoder
    assert not decoder.transformer._forward_pre_hooks
    assert all("forward" not in vars(layer.cross_attn_token_to_image) for layer in decoder.transformer.layers)
    after = three_passes(model, emb, POINTS, LABELS)  # a guided run leaves SAM2's decoder as it was
    assert all(torch.equal(a.logits, b.logits) for a, b in zip(reference[0], after))


def test_natural_negative_lands_at_the_minimum_of_the_mean_part_similarity():
    rng = np.random.default_rng(3)
    grid = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(64, 64, 16)), dtype=torch.float32), dim=-1)
    parts = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(3, 16)), dtype=torch.float32), dim=-1)
    points, labels = part_prompts(grid, parts, None, (128, 256))
    assert labels.tolist() == [1, 1, 1, 0]
    mean_map = torch.einsum("hwc,kc->hw", grid, parts).numpy() / 3
    r, c = np.unravel_index(np.argmin(mean_map), mean_map.shape)
    np.testing.assert_allclose(points[-1], [(r + 0.5) * 2 - 0.5, (c + 0.5) * 4 - 0.5])
    # the medical rule takes the background vector's best cell instead
    bg = grid[10, 20][None]
    points, labels = part_prompts(grid, parts, bg, (64, 64))
    np.testing.assert_allclose(points[-1], [10, 20])


def test_p2sam_settings_choose_rule_range_and_passes(model, frame0, monkeypatch):
    image, labels, _ = frame0
    with pytest.raises(ValueError, match="negative_rule"):
        P2SAM(model, negative_rule="ct")
    with pytest.raises(ValueError, match="negative counts"):
        P2SAM(model, negatives=(0, 2))
    natural = P2SAM(model, parts=(1, 2), negative_rule="natural", negatives=(1, 4))
    assert natural.negatives == (1,) and natural.decoder_passes == 2
    ranged = P2SAM(model, parts=(1, 2), negatives=(1, 2))
    assert ranged.decoder_passes == 4 and P2SAM(model, parts=(1, 2), cascade=True).decoder_passes == 6
    calls = []
    real = model.backbone.decode
    monkeypatch.setattr(model.backbone, "decode", lambda *a, **k: calls.append(a[2].shape[1]) or real(*a, **k))
    ranged.set_reference(image, labels, [1])
    obj = ranged.segment(image, 0).objects[0]
    assert len(calls) == 4 and len(obj.info["emd"]) == 4  # (1 or 2 parts) × (1 or 2 negatives), one pass each
    assert obj.info["negatives"] in (1, 2) and obj.info["negative_rule"] == "medical"


def test_pooled_cloud_is_exact_within_the_cap_and_close_beyond_it():
    rng = np.random.default_rng(0)
    smooth = torch.as_tensor(np.cumsum(rng.normal(size=(64, 64, 8)), axis=1) / 8, dtype=torch.float32)
    cells = np.zeros((64, 64), bool)
    cells[8:56, 4:60] = True  # 2688 cells
    reference = smooth[20:30, 20:30].reshape(-1, 8)
    full = cell_cloud(smooth, cells, max_points=10_000)
    pooled = cell_cloud(smooth, cells, max_points=512)
    assert full.pooled == 1 and len(full) == cells.sum()
    assert pooled.pooled >= 2 and len(pooled) <= 512 and pooled.weights.sum() == pytest.approx(1.0)
    exact, approx = earth_movers_distance(reference, full), earth_movers_distance(reference, pooled)
    assert approx == pytest.approx(exact, rel=0.1)


def test_a_pixel_claimed_by_two_classes_goes_to_the_higher_logit():
    a = np.full((4, 6), -5.0)
    b = np.full((4, 6), -5.0)
    a[:, :4], b[:, 2:] = 2.0, 1.0  # columns 2-3: both claim, a higher
    a[0, 3], b[0, 3] = 0.5, 3.0  # here b is higher
    got_a, got_b, got_c = highest_logit([a, b, None], (4, 6))
    assert got_a[:, :2].all() and got_a[1:, 2:4].all() and not got_a[0, 3]
    assert got_b[0, 3] and got_b[:, 4:].all() and not got_b[1:, 2:4].any()
    assert not (got_a & got_b).any() and not got_c.any()
    assert not highest_logit([np.full((2, 2), -1.0)], (2, 2))[0].any()  # all below 0: background


def test_medpersam_defaults_follow_the_paper_and_organ_type_sets_the_clicks(model):
    method = MedPerSAM(model)
    assert (method.rounds, method.refinements, method.positives, method.negatives) == (5, 1, 5, 5)
    assert method.semantic_prompt and method.config.retrain_epochs == 10
    assert retrain_steps(WarpConfig(batch=4), 9) == 30 and retrain_steps(WarpConfig(retrain_steps=7), 9) == 7
    assert (MedPerSAM(model, organ="bilateral").positives, MedPerSAM(model, organ="bilateral").negatives) == (10, 10)
    with pytest.raises(ValueError, match="organ"):
        MedPerSAM(model, organ="paired")


def test_bilateral_clicks_split_evenly_and_the_kernel_sets_the_regions():
    mask = np.zeros((60, 100), bool)
    mask[10:50, 5:40] = True  # left lung
    mask[10:50, 60:95] = True  # right lung
    sim = np.random.default_rng(1).random(mask.shape)
    points, labels = subregion_prompts(mask, sim, 10, 10, bilateral=True)
    centre = np.nonzero(mask)[1].mean()
    for kind in (1, 0):
        cols = points[labels == kind, 1]
        assert len(cols) == 10 and (cols < centre).sum() == 5
    inner, ring = candidate_regions(mask[:, :50], radius=2)
    wide_inner, wide_ring = candidate_regions(mask[:, :50], radius=6)
    assert wide_inner.sum() < inner.sum() and wide_ring.sum() > ring.sum()
    assert inner[12:48, 7:38].all() and not inner[10, 20]  # eroded by 2 pixels
