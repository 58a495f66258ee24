"""Dice and HD95 on shapes whose answer is known."""

import math

import numpy as np
import pytest

from napari_rpsam2.evaluation.metrics import dice, hd95, image_diagonal


def test_dice_by_hand():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :2] = True
    b[0, 1:4] = True
    assert dice(a, b) == pytest.approx(2 * 1 / (2 + 3))
    assert dice(a, a) == 1.0
    assert dice(np.zeros_like(a), b) == 0.0
    with pytest.raises(ValueError, match="shape"):
        dice(a, np.zeros((3, 3)))


def test_hd95_single_pixels_is_their_distance():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0, 0] = True
    b[3, 4] = True
    assert hd95(a, b) == pytest.approx(5.0)


def test_hd95_identical_is_zero_and_empty_is_diagonal():
    a = np.zeros((30, 40), bool)
    a[5:15, 5:25] = True
    assert hd95(a, a) == 0.0
    assert hd95(np.zeros_like(a), a) == pytest.approx(50.0)
    assert image_diagonal(a.shape) == pytest.approx(50.0)


def test_hd95_shifted_line():
    # two horizontal lines 7 rows apart: every border distance is 7
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[2, 3:15] = True
    b[9, 3:15] = True
    assert hd95(a, b) == pytest.approx(7.0)


def test_hd95_ignores_a_few_outlier_pixels():
    gt = np.zeros((200, 200), bool)
    gt[50:150, 50:150] = True
    pred = gt.copy()
    pred[0, 0] = True  # one stray pixel ~70 px away: under 5 % of border pixels
    assert hd95(pred, gt) == 0.0
    assert hd95(pred, gt) < math.hypot(50, 50)
