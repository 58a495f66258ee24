"""HD95 in both conventions, each against the library that defines it (MedPy, MONAI)."""

import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_rpsam2.evaluation.metrics import hd95, image_diagonal


def _random_pair(seed: int, shape=(48, 70)) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping blobby masks, sometimes touching the image edge, sometimes in pieces."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=shape), 3)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 2)
    gt = base > np.quantile(base, rng.uniform(0.5, 0.85))
    pred = (base + rng.uniform(0.1, 0.6) * noise) > np.quantile(base, rng.uniform(0.5, 0.85))
    return pred, gt


def _monai(pred: np.ndarray, gt: np.ndarray) -> float:
    from monai.metrics import compute_hausdorff_distance

    # one-hot with a background channel, batch of one; the background channel is left out
    def onehot(m):
        return torch.as_tensor(np.stack([~m, m])[None], dtype=torch.float32)

    with warnings.catch_warnings():  # MONAI's own deprecation notice about an argument it passes itself
        warnings.simplefilter("ignore", FutureWarning)
        out = compute_hausdorff_distance(onehot(pred), onehot(gt), include_background=False, percentile=95)
    return float(out[0, 0])


PAIRS = [_random_pair(s) for s in range(12)]


@pytest.mark.parametrize("i", range(len(PAIRS)))
def test_pooled_equals_medpy(i):
    from medpy.metric.binary import hd95 as medpy_hd95

    pred, gt = PAIRS[i]
    assert pred.any() and gt.any()
    assert hd95(pred, gt) == pytest.approx(medpy_hd95(pred, gt), rel=1e-9, abs=1e-9)
    assert hd95(pred, gt, "pooled") == hd95(pred, gt)  # the default


@pytest.mark.parametrize("i", range(len(PAIRS)))
def test_max_directed_equals_monai(i):
    pred, gt = PAIRS[i]
    ours = hd95(pred, gt, "max-directed")
    assert ours == pytest.approx(_monai(pred, gt), rel=1e-5, abs=1e-5)
    assert ours >= hd95(pred, gt, "pooled") - 1e-9


def test_a_small_false_blob_far_away_counts_only_in_max_directed():
    from medpy.metric.binary import hd95 as medpy_hd95

    gt = np.zeros((200, 200), bool)
    gt[20:80, 20:80] = True  # 236 border pixels
    pred = gt.copy()
    pred[120:125, 120:125] = True  # 25 px (16 border pixels) 58-64 px from the object
    # 16 of pred's 252 border pixels (6 %) are far: in the directed tail; 16 of 488 pooled (3 %) are not
    pooled, directed = hd95(pred, gt), hd95(pred, gt, "max-directed")
    assert pooled == 0.0 == medpy_hd95(pred, gt)
    assert directed > 55 and directed == pytest.approx(_monai(pred, gt), rel=1e-5)


def test_empty_masks_keep_our_documented_values_in_both_conventions():
    gt = np.zeros((30, 40), bool)
    gt[5:15, 5:25] = True
    for convention in ("pooled", "max-directed"):
        assert hd95(np.zeros_like(gt), gt, convention) == pytest.approx(image_diagonal(gt.shape))
        assert hd95(gt, np.zeros_like(gt), convention) == pytest.approx(50.0)
        assert hd95(np.zeros_like(gt), np.zeros_like(gt), convention) == 0.0
    with pytest.raises(ValueError, match="unknown HD95 convention"):
        hd95(gt, gt, "mean")
