"""Property-based tests (hypothesis): image adapter, coordinate mapping, masks and refined points."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_rpsam2.model import ImageEmbedding, ImageError
from napari_rpsam2.model.coords import (
    clamp_straight_through,
    normalized_bounds,
    normalized_to_pixels,
    pixels_to_normalized,
)
from napari_rpsam2.model.image_adapter import LargeImageWarning, encoder_picture, to_rgb_float

DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_])


@st.composite
def images(draw):
    """Random slices: 2D or (H, W, C) with C in 1..5, any dtype, NaN/inf included for floats."""
    dtype = np.dtype(draw(DTYPES))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
    shape = (h, w) if channels is None else (h, w, channels)
    elements = None
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=dtype.itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements)), channels is not None


@settings(max_examples=200, deadline=None)
@given(images(), st.floats(0.2, 5.0))
def test_to_rgb_float_is_always_an_rgb_picture_in_0_1(sample, gamma):
    image, has_channels = sample
    if image.dtype.kind == "f" and not np.isfinite(image).any():
        with pytest.raises(ImageError, match="no finite values"):
            to_rgb_float(image, gamma=gamma, rgb=has_channels or None)
        return
    out = to_rgb_float(image, gamma=gamma, rgb=has_channels or None)
    assert out.shape == image.shape[:2] + (3,)
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(2, 24), st.integers(0, 2**31))
def test_encoder_picture_caps_each_axis_and_keeps_the_mean(h, w, max_side, seed):
    image = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LargeImageWarning)
        picture = encoder_picture(image, contrast_limits=(0, 1), max_side=max_side)
    assert picture.shape == (min(h, max_side), min(w, max_side), 3)
    assert picture.dtype == np.float32 and picture.min() >= 0 and picture.max() <= 1
    assert float(picture.mean()) == pytest.approx(float(image.mean()), abs=1e-5)


hw = st.tuples(st.integers(1, 100_000), st.integers(1, 100_000))


@settings(max_examples=300, deadline=None)
@given(hw, st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=20))
def test_pixels_normalized_pixels_is_exact(image_hw, fractions):
    h, w = image_hw
    pts = np.array([[fr * h - 0.5, fc * w - 0.5] for fr, fc in fractions])  # anywhere in the image
    back = normalized_to_pixels(pixels_to_normalized(pts, image_hw), image_hw)
    np.testing.assert_allclose(back, pts, rtol=0, atol=1e-9)
    t = torch.as_tensor(pts, dtype=torch.float64)
    t_back = normalized_to_pixels(pixels_to_normalized(t, image_hw), image_hw)
    np.testing.assert_allclose(t_back.numpy(), pts, rtol=0, atol=1e-9)
    xy = pixels_to_normalized(pts, image_hw)
    assert np.all((xy >= 0) & (xy <= 1))


@settings(max_examples=200, deadline=None)
@given(hw, st.lists(st.tuples(st.floats(-3, 3), st.floats(-3, 3)), min_size=1, max_size=20))
def test_clamped_points_are_pixel_centres_inside_the_image(image_hw, xy):
    h, w = image_hw
    points = torch.tensor(xy, dtype=torch.float64, requires_grad=True)
    clamped = clamp_straight_through(points, image_hw)
    clamped.sum().backward()
    assert torch.all(points.grad == 1)  # gradients pass the border
    rc = normalized_to_pixels(clamped.detach().numpy(), image_hw)
    assert np.all(rc >= -1e-9) and np.all(rc[:, 0] <= h - 1 + 1e-9) and np.all(rc[:, 1] <= w - 1 + 1e-9)


@pytest.fixture(scope="module")
def shared(moving_model, frame0):
    _, _, emb = frame0
    return emb, moving_model.shift_block.image_context(emb.image_embed)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(-0.5, 255.5), st.floats(-0.5, 319.5)), min_size=1, max_size=24))
def test_refined_points_always_lie_inside_the_image(moving_model, shared, clicks):
    emb, context = shared
    h, w = emb.image_hw
    lo, hi = normalized_bounds(emb.image_hw)
    moved = 0.0
    for sl, xy, logits, iou in moving_model.iter_single_clicks(emb, np.array(clicks), refine=True, context=context):
        # the straight-through clamp gives exactly the clamped value (no rounding slack)
        assert torch.all(xy[:, 0] >= lo[0]) and torch.all(xy[:, 0] <= hi[0])
        assert torch.all(xy[:, 1] >= lo[1]) and torch.all(xy[:, 1] <= hi[1])
        low = moving_model.backbone.low_res_size  # 256 at SAM2's 1024 input
        assert logits.shape == (sl.stop - sl.start, low, low)
        moved = max(moved, float((xy - torch.as_tensor(pixels_to_normalized(np.array(clicks)[sl], (h, w)))).abs().max()))
    assert moved > 0  # the block is not the identity


@contextlib.contextmanager
def fake_encoder(backbone, base: ImageEmbedding):
    """Real decoder and mask upsampling, stand-in encoder output at the picture's size."""
    original = backbone.encode
    backbone.encode = lambda picture: ImageEmbedding(base.image_embed, base.high_res_feats, picture.shape[:2])
    try:
        yield
    finally:
        backbone.encode = original


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from([None, 3, 4]),
       st.floats(0, 1), st.floats(0, 1), st.integers(0, 2**31))
def test_segment_masks_have_the_image_shape(moving_model, frame0, h, w, channels, fr, fc, seed):
    _, _, base = frame0
    shape = (h, w) if channels is None else (h, w, channels)
    image = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    click = [fr * h - 0.5, fc * w - 0.5]
    with fake_encoder(moving_model.backbone, base):
        res = moving_model.segment(image, [click], refine=True)
    assert res.mask.shape == (h, w) and res.mask.dtype == bool
    r, c = res.points[0]
    assert 0 <= r <= h - 1 and 0 <= c <= w - 1
