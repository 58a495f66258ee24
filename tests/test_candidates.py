"""Grid points, per-point Dice, the ε-set, the heatmap map and the cache."""

import numpy as np
import pytest

from napari_rpsam2.model.embedding_cache import slice_signature
from napari_rpsam2.training.candidates import (CandidateCache, Cancelled, GridDice, default_stride,
                                               grid_dice, grid_points)


def test_default_stride_gives_8x8_to_16x16_points():
    for h, w in [(40, 40), (12, 300), (100, 60)]:
        mask = np.zeros((400, 400), bool)
        mask[10:10 + h, 10:10 + w] = True
        n = len(grid_points(mask))
        assert 64 <= n <= 256, (h, w, n)
    tiny = np.zeros((20, 20), bool)
    tiny[5:8, 5:8] = True
    assert default_stride(tiny) == 1 and len(grid_points(tiny)) == 9


def test_grid_points_inside_object_and_never_empty():
    mask = np.zeros((50, 50), bool)
    mask[10:40, 20:23] = True
    pts = grid_points(mask, stride=7)
    assert mask[pts[:, 0].astype(int), pts[:, 1].astype(int)].all()
    thin = np.zeros((50, 50), bool)
    thin[30, 31] = True
    np.testing.assert_array_equal(grid_points(thin, stride=20), [[30.0, 31.0]])
    with pytest.raises(ValueError, match="empty"):
        grid_points(np.zeros((5, 5), bool))


def test_epsilon_set_and_map():
    gd = GridDice(np.array([[2.0, 2.0], [2.0, 6.0], [6.0, 2.0]]), np.array([0.9, 0.897, 0.5]), 4, (10, 10))
    np.testing.assert_array_equal(gd.candidates(0.005), [[2.0, 2.0], [2.0, 6.0]])
    np.testing.assert_array_equal(gd.candidates(0.001), [[2.0, 2.0]])
    m = gd.to_map()
    assert m.shape == (10, 10) and m.dtype == np.float32
    assert m[2, 2] == pytest.approx(0.9) and m[0, 0] == pytest.approx(0.9) and m[3, 3] == pytest.approx(0.9)
    assert m[2, 6] == pytest.approx(0.897) and m[6, 2] == pytest.approx(0.5)
    assert np.isnan(m[9, 9])


def test_grid_dice_matches_single_segment_calls(model, frame0):
    image, labels, emb = frame0
    mask = labels == 2
    progress = []
    gd = grid_dice(model, emb, mask, stride=14, chunk_size=8, progress=lambda d, t: progress.append((d, t)))
    assert len(gd.points) >= 5 and progress[-1] == (len(gd.points), len(gd.points))
    assert ((gd.dice >= 0) & (gd.dice <= 1)).all()
    # the Dice of one grid point equals what a user gets by clicking there
    k = int(np.argmax(gd.dice))
    res = model.segment(image, [gd.points[k]], refine=False)
    inter = (res.mask & mask).sum()
    assert gd.dice[k] == pytest.approx(2 * inter / (res.mask.sum() + mask.sum()), abs=1e-6)
    with pytest.raises(Cancelled):
        grid_dice(model, emb, mask, stride=14, chunk_size=4, cancel=lambda: True)


def test_candidate_cache_computes_once(model, frame0):
    image, labels, emb = frame0
    cache = CandidateCache()
    sig = slice_signature(image, None, 1.0, None)
    calls = []
    a = cache.grid_dice(model, emb, labels == 1, image_signature=sig, object_id=1, stride=20,
                        progress=lambda d, t: calls.append(d))
    b = cache.grid_dice(model, emb, labels == 1, image_signature=sig, object_id=1, stride=20,
                        progress=lambda d, t: calls.append(d))
    assert a is b and cache.hits == 1 and len(calls) >= 1
    edited = labels == 1
    edited[edited.nonzero()[0][0]] = False  # the label changed: recompute
    cache.grid_dice(model, emb, edited, image_signature=sig, object_id=1, stride=20)
    assert len(cache) == 2


def test_refined_results_are_keyed_by_the_blocks_weights_not_the_object(model, moving_model, frame0):
    """A refined heatmap is reused for the same weights in a new object, never for other weights."""
    import copy

    from napari_rpsam2 import RPSAM2

    image, labels, emb = frame0
    cache = CandidateCache()
    sig = slice_signature(image, None, 1.0, None)
    kwargs = dict(image_signature=sig, object_id=1, stride=40, refine=True)
    first = cache.grid_dice(moving_model, emb, labels == 1, **kwargs)
    same_weights = RPSAM2(model.backbone, shift_block=copy.deepcopy(moving_model.shift_block), cache=model.cache)
    assert cache.grid_dice(same_weights, emb, labels == 1, **kwargs) is first
    untrained = RPSAM2(model.backbone, cache=model.cache)
    other = cache.grid_dice(untrained, emb, labels == 1, **kwargs)
    assert other is not first and len(cache) == 2
    assert not np.array_equal(other.dice, first.dice)  # the moving block gives other masks
