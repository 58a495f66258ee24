"""One-shot prompts: SAM2 decoder passes, PerSAM, P²SAM parts and retrieval, Med-PerSAM warping."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_rpsam2.evaluation.metrics import dice
from napari_rpsam2.model.coords import normalized_to_prompt, pixels_to_normalized
from napari_rpsam2.oneshot import P2SAM, PerSAM, WarpConfig, make_method, segment_stack
from napari_rpsam2.oneshot import p2sam as p2sam_module
from napari_rpsam2.oneshot.features import feature_grid, reference_features
from napari_rpsam2.oneshot.medpersam import candidate_regions, subregion_prompts
from napari_rpsam2.oneshot.p2sam import part_prompts, part_vectors, retrieve
from napari_rpsam2.oneshot.passes import box_of, decode, three_passes
from napari_rpsam2.oneshot.protocol import prompt_precision
from napari_rpsam2.oneshot.registration import grey_picture, one_hot, train_warp, warp_labels


class DecodeSpy:
    """Records every ``backbone.decode`` call and its answer."""

    def __init__(self, backbone):
        self.inner, self.calls = backbone.decode, []

    def __call__(self, emb, points_xy, labels, multimask, mask_input=None):
        logits, iou = self.inner(emb, points_xy, labels, multimask, mask_input=mask_input)
        self.calls.append({"xy": points_xy.clone(), "labels": labels.clone(), "multimask": multimask,
                           "mask_input": None if mask_input is None else mask_input.clone(), "logits": logits.clone()})
        return logits, iou


def test_decode_with_box_and_mask_prompt_equals_sam2_image_predictor(model, frame0):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image, labels, emb = frame0
    h, w = emb.image_hw
    points, lab = np.array([[120.0, 150.0], [30.0, 40.0]]), np.array([1, 0])
    box = np.array([80.0, 100.0, 180.0, 230.0])
    prior = decode(model, emb, points, lab, multimask=False)
    ours = decode(model, emb, points, lab, box=box, mask_input=prior.logits, multimask=True)

    pred = SAM2ImagePredictor(model.backbone.model)
    pred._features = {"image_embed": emb.image_embed, "high_res_feats": emb.high_res_feats}
    pred._orig_hw, pred._is_image_set = [emb.image_hw], True
    size = model.backbone.input_size

    def to_predictor(rc):  # the predictor scales x by size / W; we hand SAM2 (col + 0.5) / W * size - 0.5
        xy = normalized_to_prompt(torch.as_tensor(pixels_to_normalized(rc, (h, w))), size).numpy()
        return xy * np.array([w, h]) / size

    corners = to_predictor(np.array([[box[0], box[1]], [box[2], box[3]]])).reshape(-1)
    with torch.inference_mode():
        _, iou, low = pred.predict(point_coords=to_predictor(points), point_labels=lab, box=corners,
                                   mask_input=prior.logits[None].numpy(), multimask_output=True,
                                   return_logits=True)
    best = int(np.argmax(iou))
    np.testing.assert_allclose(ours.logits.numpy(), low[best], atol=1e-4)
    assert ours.score == pytest.approx(float(iou[best]), abs=1e-5)


def test_persam_three_passes_feed_logits_then_the_box(model, frame0, monkeypatch):
    image, labels, emb = frame0
    spy = DecodeSpy(model.backbone)
    monkeypatch.setattr(model.backbone, "decode", spy)
    passes = three_passes(model, emb, np.array([[120.0, 150.0], [5.0, 5.0]]), np.array([1, 0]))
    assert len(spy.calls) == len(passes) == 3, "the random-weight model gives a non-empty second mask here"
    first, second = spy.calls[:2]
    assert first["mask_input"] is None and not first["multimask"]
    torch.testing.assert_close(second["mask_input"][0, 0], first["logits"][0])
    assert second["multimask"]
    third = spy.calls[2]  # the box of the second mask, corners first, and the second logits
    assert third["labels"][0, :2].tolist() == [2, 3] and third["labels"][0, 2:].tolist() == [1, 0]
    r0, c0, r1, c1 = box_of(passes[1].mask)
    corners = pixels_to_normalized(np.array([[r0, c0], [r1, c1]]), emb.image_hw)
    np.testing.assert_allclose(third["xy"][0, :2].numpy(), corners, atol=1e-6)
    torch.testing.assert_close(third["mask_input"][0, 0], second["logits"][0])


@pytest.mark.parametrize("name", ["persam", "p2sam"])
def test_refine_moves_every_generated_positive_click_and_never_a_negative(name, moving_model, frame0):
    image, labels, _ = frame0
    method = make_method(name, moving_model, refine=True, **({"parts": (2,)} if name == "p2sam" else {}))
    method.set_reference(image, labels, [1])
    obj = method.segment(image, 0).objects[0]
    pos = obj.labels == 1
    assert pos.sum() >= 1 and (obj.labels == 0).sum() == 1
    expected = moving_model.segment(image, obj.points, obj.labels, refine=True).points
    np.testing.assert_allclose(obj.decoded_points, expected, atol=0.05)
    assert np.all(np.linalg.norm(obj.decoded_points[pos] - obj.points[pos], axis=1) > 0.5)
    np.testing.assert_array_equal(obj.decoded_points[~pos], obj.points[~pos])


def test_persam_clicks_follow_the_prototype_similarity(model, frame0):
    image, labels, emb = frame0
    method = PerSAM(model)
    method.set_reference(image, labels, [1])
    result = method.segment(image, 0).objects[0]
    assert result.labels.tolist() == [1, 0] and result.info["passes"] in (2, 3)
    grid = feature_grid(model.backbone, emb)
    sim = (grid @ method.reference[1].prototype).numpy()
    g = grid.shape[0]  # SAM2's feature grid: 64 at its 1024 input
    cell = lambda rc: (int((rc[0] + 0.5) * g / emb.image_hw[0]), int((rc[1] + 0.5) * g / emb.image_hw[1]))
    assert sim[cell(result.points[0])] == pytest.approx(sim.max())
    assert sim[cell(result.points[1])] == pytest.approx(sim.min())


def _part_grid(centres, vectors, background, rng, noise=0.05):
    """A 64×64 feature grid: 6×6 blocks of part features at ``centres`` on a background vector."""
    grid = background + noise * rng.normal(size=(64, 64, background.size))
    mask = np.zeros((64, 64), bool)
    for (r, c), v in zip(centres, vectors):
        grid[r - 3:r + 3, c - 3:c + 3] = v + noise * rng.normal(size=(6, 6, v.size))
        mask[r - 3:r + 3, c - 3:c + 3] = True
    return torch.nn.functional.normalize(torch.as_tensor(grid, dtype=torch.float32), dim=-1), mask


@pytest.mark.parametrize("n", [2, 3, 4])
def test_p2sam_puts_one_positive_click_in_each_of_n_parts(n):
    rng = np.random.default_rng(n)
    vectors, background = rng.normal(size=(n, 32)), rng.normal(size=32)
    ref_grid, ref_mask = _part_grid([(10, 8 + 12 * k) for k in range(n)], vectors, background, rng)
    tgt_centres = [(50, 56 - 13 * k) for k in range(n)]
    tgt_grid, _ = _part_grid(tgt_centres, vectors, background, rng)
    ref = reference_features(ref_grid, ref_mask)
    points, labels = part_prompts(tgt_grid, part_vectors(ref.foreground, n), part_vectors(ref.background, 1),
                                  (64, 64))
    positives = points[labels == 1]
    assert len(positives) == n
    hits = [[abs(p[0] - r) <= 3 and abs(p[1] - c) <= 3 for (r, c) in tgt_centres] for p in positives]
    assert sorted(np.argmax(hits, axis=1).tolist()) == list(range(n)) and all(map(any, hits))
    negative = points[labels == 0][0]
    assert not any(abs(negative[0] - r) <= 3 and abs(negative[1] - c) <= 3 for (r, c) in tgt_centres)


def test_retrieval_picks_the_candidate_with_the_matching_distribution():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    reference = torch.as_tensor(centre + 0.1 * rng.normal(size=(80, 16)))
    matching = torch.as_tensor(centre + 0.1 * rng.normal(size=(40, 16)))
    shifted = torch.as_tensor(centre + 0.5 + 0.1 * rng.normal(size=(40, 16)))
    too_wide = torch.as_tensor(centre + 0.6 * rng.normal(size=(60, 16)))
    for order in ([shifted, matching, too_wide], [matching, too_wide, shifted], [too_wide, shifted, matching]):
        best, dist = retrieve(reference, order)
        assert order[best] is matching and dist[best] == min(dist)
    assert retrieve(reference, [torch.zeros(0, 16), matching])[0] == 1  # an empty mask never wins


def test_reference_is_encoded_and_clustered_once_for_the_whole_stack(model, instrument_stack, monkeypatch):
    images, labels = instrument_stack
    fits = []

    class CountingKMeans(p2sam_module.KMeans):
        def fit(self, x, *args, **kwargs):
            fits.append(len(x))
            return super().fit(x, *args, **kwargs)

    monkeypatch.setattr(p2sam_module, "KMeans", CountingKMeans)
    method = P2SAM(model, parts=(1, 2))
    embedded = []
    inner = method.embed
    monkeypatch.setattr(method, "embed", lambda image, key=None: embedded.append(key) or inner(image, key))
    results = segment_stack(method, images, 0, labels[0], object_ids=[1], key="stack")
    assert sorted(results) == [1, 2]
    assert [embedded.count(("stack", i)) for i in range(3)] == [1, 1, 1]
    assert len(fits) == 1  # 2 parts, once for the stack; 1 part and 1 negative need no k-means
    for res in results.values():
        (obj,) = res.objects
        assert obj.info["parts"] in (1, 2) and len(obj.info["emd"]) == 2


def _synthetic_pair(size=96):
    rng = np.random.default_rng(0)
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3)
    yy, xx = np.mgrid[:size, :size]
    lab = ((((yy - 0.45 * size) / (0.2 * size)) ** 2 + ((xx - 0.5 * size) / (0.28 * size)) ** 2) < 1).astype(np.int32)
    img = (texture - texture.min()) / np.ptp(texture) * 0.5 + 0.5 * lab + 0.2 * yy / size
    angle, scale, shift = np.deg2rad(12), 1.1, np.array([6.0, -5.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
    centre = np.array([size / 2, size / 2])
    offset = centre - rot @ (centre + shift)
    moved = ndimage.affine_transform(img, rot, offset, order=1, mode="nearest")
    moved_lab = ndimage.affine_transform(lab, rot, offset, order=0)
    return img.astype(np.float32), lab, moved.astype(np.float32), moved_lab


def test_warped_mask_fits_a_shifted_rotated_scaled_target():
    img, lab, target, target_lab = _synthetic_pair()
    config = WarpConfig(size=48, channels=4, steps=60, batch=1)
    ref = grey_picture(img, config.size)
    tgt = grey_picture(target, config.size)[None]
    model = train_warp(ref, one_hot(lab, [1], config.size), tgt, config=config)
    warped = warp_labels(model, ref, lab, [1], tgt[0])[0]
    copied = dice(lab > 0, target_lab > 0)
    assert copied < 0.85, "the target must really have moved"
    assert dice(warped, target_lab > 0) >= 0.9


def test_medpersam_prompts_come_from_erosion_and_ring_and_the_warped_mask_is_the_prompt(model, instrument_stack):
    images, labels = instrument_stack
    mask = labels[0] == 1
    sim = np.random.default_rng(0).random(mask.shape)
    points, lab = subregion_prompts(mask, sim, positives=5, negatives=5)
    assert lab.tolist() == [1] * 5 + [0] * 5
    r, c = points.astype(int).T
    assert mask[r[:5], c[:5]].all()
    eroded, ring = candidate_regions(mask)
    assert eroded[r[:5], c[:5]].all() and ring[r[5:], c[5:]].all() and not eroded[r[5:], c[5:]].any()
    method = make_method("medpersam", model, config=WarpConfig(size=32, channels=4, steps=2, batch=1), rounds=0)
    results = segment_stack(method, images[:2], 0, labels[0], object_ids=[1])
    obj = results[1].objects[0]
    assert obj.mask_prompt.shape == labels[1].shape and obj.mask_prompt.dtype == bool
    assert method.warp_model.parameter_count() > 0 and method.training_seconds > 0


def test_prompt_precision_counts_positive_inside_and_negative_outside():
    truth = np.zeros((10, 10), bool)
    truth[2:5, 2:5] = True
    pos, neg = prompt_precision(np.array([[3, 3], [8, 8], [4, 2], [0, 0]]), np.array([1, 1, 0, 0]), truth)
    assert pos == 0.5 and neg == 0.5
    assert prompt_precision(np.array([[3, 3]]), np.array([1]), truth) == (1.0, None)


def test_medpersam_rounds_retrain_the_warping_model_on_sam2_pseudo_labels(model, instrument_stack, monkeypatch):
    """Each round segments the targets with SAM2 and trains the same warping model on those masks."""
    import napari_rpsam2.oneshot.medpersam as medpersam

    images, labels = instrument_stack
    calls = []
    real = medpersam.train_warp

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(medpersam, "train_warp", recording)
    stages = []
    method = make_method("medpersam", model, config=WarpConfig(size=32, channels=4, steps=2, retrain_steps=1,
                                                               batch=1), rounds=2)
    segment_stack(method, images[:2], 0, labels[0], object_ids=[1],
                  progress=lambda stage, done, total: stages.append(stage))
    assert len(calls) == 3  # the first training, then one per round
    assert calls[0].get("pseudo_masks") is None
    for call in calls[1:]:
        assert call["model"] is not None and call["steps"] == 1
        assert call["pseudo_masks"].shape[0] == 1  # one target slice
    assert calls[1]["model"] is calls[2]["model"] is method.warp_model  # the same model, trained further
    assert "pseudo-labels 1/2" in stages and "pseudo-labels 2/2" in stages
