"""Grid-sensitivity heatmap: built on the trainer's grid_dice, checked against real clicks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_rpsam2.evaluation.sensitivity import LOW_DICE, SensitivityMap, heatmap
from napari_rpsam2.training.candidates import grid_dice

STRIDE = 12  # keeps the grid at a few dozen clicks on the CPU


@pytest.fixture(scope="module")
def forceps_map(model, frame0):
    image, labels, _ = frame0
    return heatmap(model, image, labels == 1, stride=STRIDE)


def test_map_has_the_image_shape_and_dice_in_unit_range(forceps_map, frame0):
    image, labels, _ = frame0
    m = forceps_map.dice_map
    assert m.shape == labels.shape and m.dtype == np.float32
    finite = np.isfinite(m)
    assert finite.any() and (~finite).any()  # NaN outside the grid cells
    assert m[finite].min() >= 0.0 and m[finite].max() <= 1.0
    # every grid point lies inside the object and its cell carries its own Dice
    r, c = np.round(forceps_map.points).astype(int).T
    assert (labels[r, c] == 1).all()
    np.testing.assert_allclose(m[r, c], forceps_map.dice, atol=1e-6)


def test_same_numbers_as_the_trainer_candidates(forceps_map, model, frame0):
    image, labels, emb = frame0
    grid = grid_dice(model, emb, labels == 1, stride=STRIDE)
    np.testing.assert_allclose(forceps_map.points, np.asarray(grid.points, float))
    np.testing.assert_allclose(forceps_map.dice, np.asarray(grid.dice, float), atol=1e-6)


def test_map_matches_segmenting_from_single_clicks(forceps_map, model, frame0):
    image, labels, _ = frame0
    gt = labels == 1
    picks = np.linspace(0, len(forceps_map.dice) - 1, 3).astype(int)
    for k in picks:
        mask = model.segment(image, forceps_map.points[k][None], refine=False).mask
        dice = 2 * np.logical_and(mask, gt).sum() / (mask.sum() + gt.sum())
        assert forceps_map.dice[k] == pytest.approx(dice, abs=0.02)


def test_stats_summarise_the_clicks(forceps_map):
    s = forceps_map.stats()
    d = forceps_map.dice
    assert s["points"] == len(d) > 4
    assert s["mean"] == pytest.approx(d.mean()) and s["std"] == pytest.approx(d.std())
    assert s["min"] == pytest.approx(d.min()) and 0 <= s["min"] <= s["mean"] <= 1
    assert s[f"share_below_{LOW_DICE}"] == pytest.approx((d < LOW_DICE).mean())


def test_stats_on_a_hand_made_map():
    smap = SensitivityMap(np.full((4, 4), np.nan, np.float32), np.zeros((4, 2)),
                          np.array([0.2, 0.4, 0.6, 1.0]), 2.0, refine=True)
    s = smap.stats()
    assert smap.method == "rpsam2"
    assert s["mean"] == pytest.approx(0.55) and s["min"] == pytest.approx(0.2)
    assert s["share_below_0.5"] == pytest.approx(0.5)


def test_coarser_stride_gives_fewer_clicks(forceps_map, model, frame0):
    image, labels, _ = frame0
    coarse = heatmap(model, image, labels == 1, stride=2 * STRIDE)
    assert 0 < len(coarse.dice) < len(forceps_map.dice)


def test_png_overlay_decodes(forceps_map, frame0, tmp_path):
    image, labels, _ = frame0
    path = forceps_map.save_png(tmp_path / "map.png", image=image, mask=labels == 1, title="forceps")
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert np.asarray(im).std() > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]


@pytest.mark.parametrize("bad, match", [("empty", "empty"), ("shape", "differ")])
def test_bad_masks_are_refused(model, frame0, bad, match):
    image, labels, _ = frame0
    mask = np.zeros_like(labels) if bad == "empty" else (labels == 1)[:-3]
    with pytest.raises(ValueError, match=match):
        heatmap(model, image, mask)
