"""Each loss term against a value worked out by hand."""

import math

import numpy as np
import pytest
import torch

from napari_rpsam2.training.losses import compound_loss, distance_loss, object_shape, soft_dice_loss


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


def test_compound_weights():
    logits = torch.zeros(2, 2, 2)
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    pts = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    cands = torch.tensor([[0.6, 0.5]])
    # a 256×256 image whose object is pixel column 64 (x from 64 to 65 px): x = 0.5 is 128 px, 63 px away
    mask = np.zeros((256, 256), bool)
    mask[:, 64] = True
    t = compound_loss(logits, pts, target, cands, object_shape(mask), alpha=1.0, beta=0.1, gamma=1.0)
    dist = 0.5 * (math.exp(1.5) - 1.0)
    out = math.log1p(math.exp(63.0 / 2.0)) - math.log(2.0)  # softplus(d/τ) − log 2, d = 128 − 65 = 63
    assert t.dice.item() == pytest.approx(0.4)
    assert t.dist.item() == pytest.approx(dist, rel=1e-6)
    assert t.out.item() == pytest.approx(out, rel=1e-6)
    assert t.total.item() == pytest.approx(0.4 + 0.1 * dist + out, rel=1e-6)
