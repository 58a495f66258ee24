"""L_out: zero on the object, a pull towards it outside, the same for objects of any size."""

import math

import numpy as np
import pytest
import torch

from napari_rpsam2.model.coords import pixels_to_normalized
from napari_rpsam2.training.losses import object_shape, outside_distance, outside_loss

TAU = 2.0


def _xy(points_rc, hw) -> torch.Tensor:
    return torch.as_tensor(pixels_to_normalized(np.asarray(points_rc, float), hw), dtype=torch.float32)


def _brute_distance(xy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Distance (1/256 of an axis) from each point to the nearest object pixel square, over ALL pixels."""
    h, w = mask.shape
    rc = np.argwhere(mask).astype(float)
    u, v = xy[:, :1] * w, xy[:, 1:] * h
    dx = (np.maximum(rc[:, 1] - u, 0) + np.maximum(u - rc[:, 1] - 1, 0)) * 256 / w
    dy = (np.maximum(rc[:, 0] - v, 0) + np.maximum(v - rc[:, 0] - 1, 0)) * 256 / h
    return np.sqrt(dx ** 2 + dy ** 2).min(1)


def _blob(hw, seed) -> np.ndarray:
    from scipy import ndimage

    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=hw), 4)
    return noise > np.quantile(noise, 0.7)


@pytest.mark.parametrize("hw", [(48, 64), (80, 40)])
def test_click_on_the_object_has_exactly_zero_loss_and_gradient(hw):
    mask = _blob(hw, 1)
    shape = object_shape(mask)
    inside = np.argwhere(mask)  # every object pixel centre, border pixels included
    pts = _xy(inside, hw).requires_grad_(True)
    loss = outside_loss(pts, shape, TAU)
    loss.sum().backward()
    assert torch.count_nonzero(loss) == 0
    assert torch.count_nonzero(pts.grad) == 0
    # off-centre points still on an object pixel (its square reaches the border) are on the object too
    jitter = _xy(inside + np.random.default_rng(2).uniform(-0.49, 0.49, inside.shape), hw).requires_grad_(True)
    outside_loss(jitter, shape, TAU).sum().backward()
    assert torch.count_nonzero(jitter.grad) == 0


def test_outside_click_by_hand_and_pulled_towards_the_object():
    hw = (256, 256)  # square 256 image: distance units are pixels
    mask = np.zeros(hw, bool)
    mask[100:120, 100:140] = True  # rows 100..119, cols 100..139: edges at 100 and 140 px
    shape = object_shape(mask)
    pts = _xy([[110, 150], [90, 90], [130, 120]], hw).requires_grad_(True)
    # (110, 150): centre 150.5 → 10.5 px right of edge 140; (90, 90): 9.5 px up and left of the corner;
    # (130, 120): 10.5 px below edge 120
    expected_d = [10.5, math.hypot(9.5, 9.5), 10.5]
    np.testing.assert_allclose(outside_distance(pts, shape).detach().numpy(), expected_d, rtol=1e-5)
    loss = outside_loss(pts, shape, TAU)
    np.testing.assert_allclose(loss.detach().numpy(), [math.log1p(math.exp(d / TAU)) - math.log(2) for d in
                                                       expected_d], rtol=1e-5)
    loss.sum().backward()
    g = pts.grad.numpy()
    assert g[0, 0] > 0 and g[0, 1] == 0  # right of the object: descent moves left only
    assert g[1, 0] < 0 and g[1, 1] < 0  # above-left of the corner: moves down-right
    assert g[2, 0] == 0 and g[2, 1] > 0  # below: moves up only
    # a pull of at least 1/(2τ) per unit distance, i.e. ≥ 256/(2τ) per unit of the normalized frame
    assert np.abs(g[0, 0]) >= 256 / (2 * TAU) - 1e-3
    # following the gradient brings a click onto the object, where the loss and the pull stop
    p = pts.detach()[1:2].clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=2e-5)  # steps of about 0.3-0.6 px
    for _ in range(100):
        opt.zero_grad()
        outside_loss(p, shape, TAU).sum().backward()
        opt.step()
    assert float(outside_loss(p.detach(), shape, TAU)) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distance_matches_brute_force_on_a_non_square_image(seed):
    hw = (60, 90)
    mask = _blob(hw, seed)
    xy = np.random.default_rng(seed).uniform(0, 1, (200, 2))
    got = outside_distance(torch.as_tensor(xy, dtype=torch.float64), object_shape(mask)).numpy()
    np.testing.assert_allclose(got, _brute_distance(xy, mask), rtol=1e-6, atol=1e-9)


def _tiny_objects() -> dict[str, np.ndarray]:
    hw = (768, 1024)
    shapes = {"2x2": (slice(60, 62), slice(100, 102)), "3x3": (slice(60, 63), slice(300, 303)),
              "2x6": (slice(60, 62), slice(500, 506)), "4x4": (slice(60, 64), slice(700, 704)),
              "1-px shaft": (slice(150, 650), slice(900, 901)), "large": (slice(250, 450), slice(300, 600))}
    out = {}
    for name, box in shapes.items():
        m = np.zeros(hw, bool)
        m[box] = True
        out[name] = m
    return out


def test_tiny_objects_give_finite_losses_in_the_range_of_large_ones():
    """2×2 … 4×4 px objects and a 1-px shaft vanish in SAM2's 256×256 frame; L_out must not."""
    objects = _tiny_objects()
    hw = (768, 1024)
    for name, mask in objects.items():
        shape = object_shape(mask)
        rows, cols = np.nonzero(mask)
        top, right = rows.min(), cols.max()
        on = _xy(np.argwhere(mask)[:50], hw)
        assert torch.count_nonzero(outside_loss(on, shape, TAU)) == 0, name
        # the centre of the pixel 8 columns right of the object's last one is 7.5 px from its edge:
        # 7.5·256/1024 = 1.875 mask pixels, whatever the object's size
        off = _xy([[top, right + 8]], hw)
        assert float(outside_distance(off, shape)) == pytest.approx(1.875, rel=1e-5), name
        loss = float(outside_loss(off, shape, TAU))
        expected = math.log1p(math.exp(1.875 / TAU)) - math.log(2)
        assert math.isfinite(loss) and loss == pytest.approx(expected, rel=1e-5), name
        # anywhere in the image the loss stays below that of the farthest point from a large object
        far = torch.rand(500, 2, generator=torch.Generator().manual_seed(0))
        assert float(outside_loss(far, shape, TAU).max()) < 256 * math.sqrt(2) / TAU, name


def test_trainer_targets_of_tiny_objects(model, moving_model):
    """The trainer's targets: clicks on any object cost no L_out; moved clicks cost the same for any size.

    (Before, an object that vanished in the 256×256 frame scored about 91 per click.)  The
    refined clicks and masks come from the real decoder; to stay cheap there is no backward
    pass and each object's candidate is its first pixel instead of a grid search.
    """
    from napari_rpsam2.evaluation.grid_dice import GridDice
    from napari_rpsam2.training.losses import compound_loss
    from napari_rpsam2.training.trainer import TrainConfig, _object_target

    image = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    emb, rng = model.embed(image, rgb=True), np.random.default_rng(1)
    moved = {}
    for name, mask in _tiny_objects().items():
        first = np.argwhere(mask)[:1].astype(float)
        obj = _object_target(mask, GridDice(first, np.ones(1), 1, mask.shape), TrainConfig(), model.device,
                             model.backbone.low_res_size)
        clicks = obj.inside[rng.integers(len(obj.inside), size=2)]
        for which, refine in ((model, False), (moving_model, True)):
            (_, xy, logits, _), = which.iter_single_clicks(emb, clicks, refine=refine, chunk_size=2)
            terms = compound_loss(logits, xy.float(), obj.target, obj.candidates, obj.shape)
            assert all(math.isfinite(float(v)) for v in (terms.dice, terms.dist, terms.out)), name
            assert 0.0 <= float(terms.dice) <= 1.0, name
            if not refine:
                assert float(terms.out) == 0.0, name
            else:
                moved[name] = float(terms.out)
    # the same clicks pushed up to 40 % of an axis cost about as much whatever the object's size
    tiny = [moved[k] for k in ("2x2", "3x3", "2x6", "4x4")]
    assert max(tiny) < 1.5 * min(tiny) + 1.0, moved
    assert max(moved.values()) < 0.4 * 256 * math.sqrt(2) / TAU, moved
