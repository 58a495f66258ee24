"""Each loss term against a value worked out by hand."""

import math

import numpy as np
import pytest
import torch

from napari_rpsam2.training.losses import (compound_loss, distance_loss, outside_loss, sample_map,
                                           signed_distance_map, soft_dice_loss)


def test_soft_dice_by_hand():
    # p = sigmoid(0) = 0.5 on 4 pixels, target covers 2 of them:
    # 1 - (2*1 + 1) / (2 + 2 + 1) = 1 - 3/5 = 0.4
    logits = torch.zeros(1, 2, 2)
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.4)
    # confident and right → close to 0; confident and wrong → close to 1
    good = torch.where(target > 0, 20.0, -20.0)[None]
    assert soft_dice_loss(good, target).item() == pytest.approx(0.0, abs=1e-6)
    # all wrong: 1 - (0 + 1) / (2 + 2 + 1) = 0.8
    assert soft_dice_loss(-good, target).item() == pytest.approx(0.8, abs=1e-6)


def test_distance_loss_by_hand_and_min_over_candidates():
    theta = 15.0
    p = torch.tensor([[0.5, 0.5]])
    g = torch.tensor([[0.6, 0.5], [0.0, 0.0]])
    # nearest candidate: |dx| = 0.1, |dy| = 0 → ½(e^1.5 + e^0 − 2) = ½(e^1.5 − 1)
    expected = 0.5 * (math.exp(1.5) - 1.0)
    assert distance_loss(p, g, theta).item() == pytest.approx(expected, rel=1e-6)
    assert distance_loss(torch.tensor([[0.0, 0.0]]), g, theta).item() == pytest.approx(0.0)


def test_distance_loss_gradient_points_to_candidate():
    p = torch.tensor([[0.5, 0.5]], requires_grad=True)
    distance_loss(p, torch.tensor([[0.6, 0.4]])).sum().backward()
    assert p.grad[0, 0] < 0 and p.grad[0, 1] > 0  # descending moves x up, y down


def test_signed_distance_map_by_hand():
    mask = np.zeros((1, 7), bool)
    mask[0, 2:5] = True  # columns 2, 3, 4
    sd = signed_distance_map(mask)[0]
    np.testing.assert_allclose(sd, [-1.5, -0.5, 0.5, 1.5, 0.5, -0.5, -1.5])


def test_outside_loss_by_hand():
    field = torch.tensor([[-4.0, 0.0, 4.0]])  # one row, 3 pixels; centres at x = 1/6, 1/2, 5/6
    pts = torch.tensor([[0.5, 0.5], [1 / 6, 0.5], [5 / 6, 0.5], [1 / 3, 0.5]])
    np.testing.assert_allclose(sample_map(field, pts).numpy(), [0.0, -4.0, 4.0, -2.0], atol=1e-5)
    tau = 2.0
    # BCE(sigmoid(sd/τ), 1) = softplus(−sd/τ) = log(1 + e^(−sd/τ))
    expected = [math.log(2.0), math.log(1 + math.exp(2.0)), math.log(1 + math.exp(-2.0)), math.log(1 + math.e)]
    np.testing.assert_allclose(outside_loss(pts, field, tau).numpy(), expected, rtol=1e-5)


def test_outside_loss_has_gradient_far_outside():
    field = torch.as_tensor(signed_distance_map(np.pad(np.ones((4, 4), bool), 20)))
    p = torch.tensor([[0.05, 0.05]], requires_grad=True)  # far from the object in the middle
    outside_loss(p, field).sum().backward()
    assert p.grad[0, 0] < 0 and p.grad[0, 1] < 0  # pulled towards the centre


def test_compound_weights():
    logits = torch.zeros(2, 2, 2)
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    pts = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    cands = torch.tensor([[0.6, 0.5]])
    sd = torch.full((2, 2), 0.0)
    t = compound_loss(logits, pts, target, cands, sd, alpha=1.0, beta=0.1, gamma=1.0)
    dist = 0.5 * (math.exp(1.5) - 1.0)
    assert t.dice.item() == pytest.approx(0.4)
    assert t.dist.item() == pytest.approx(dist, rel=1e-6)
    assert t.out.item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert t.total.item() == pytest.approx(0.4 + 0.1 * dist + math.log(2.0), rel=1e-6)
