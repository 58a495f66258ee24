"""Every kind of napari image slice reaches SAM2 as the user sees it."""

import numpy as np
import pytest

from napari_rpsam2.model import to_rgb_float


def test_gray_uint8_uses_the_full_range_and_is_repeated():
    img = np.array([[0, 128], [255, 64]], np.uint8)
    out = to_rgb_float(img)
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], img / 255.0, atol=1e-6)
    assert np.array_equal(out[..., 0], out[..., 2])


def test_contrast_limits_decide_what_sam2_sees():
    img = np.array([[100, 200], [300, 4000]], np.uint16)
    out = to_rgb_float(img, contrast_limits=(100, 300))[..., 0]
    np.testing.assert_allclose(out, [[0.0, 0.5], [1.0, 1.0]], atol=1e-6)
    # default for 16-bit data is the data range, as napari does
    np.testing.assert_allclose(to_rgb_float(img)[..., 0].max(), 1.0)
    np.testing.assert_allclose(to_rgb_float(img)[..., 0].min(), 0.0)


def test_gamma_is_applied_after_the_contrast_mapping():
    img = np.array([[0.0, 0.25, 1.0]], np.float32)
    out = to_rgb_float(img, contrast_limits=(0, 1), gamma=2.0)[..., 0]
    np.testing.assert_allclose(out, [[0.0, 0.0625, 1.0]], atol=1e-6)


def test_float_image_with_negative_values():
    img = np.linspace(-5, 5, 12, dtype=np.float64).reshape(3, 4)
    out = to_rgb_float(img)
    assert out.min() == 0.0 and out.max() == 1.0


def test_rgb_and_rgba_keep_their_colours():
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = 255
    out = to_rgb_float(rgb)
    assert np.all(out[..., 0] == 1.0) and np.all(out[..., 1:] == 0.0)
    rgba = np.concatenate([rgb, np.full((3, 4, 1), 7, np.uint8)], axis=-1)
    assert np.array_equal(to_rgb_float(rgba), out), "alpha is dropped"


def test_two_and_many_channels_become_a_picture():
    two = np.zeros((20, 10, 2), np.uint8)
    two[..., 1] = 255
    out = to_rgb_float(two, rgb=True)
    assert np.all(out[..., 1] == 1.0) and np.all(out[..., 0] == 0.0) and np.all(out[..., 2] == 0.0)
    many = np.full((20, 10, 6), 255, np.uint8)
    assert np.all(to_rgb_float(many, rgb=True) == 1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: (np.random.default_rng(0).random((60, 90)) * 65535).astype(np.uint16),
        lambda: np.random.default_rng(1).random((90, 60, 4)).astype(np.float32),
    ],
    ids=["uint16-gray", "float-rgba"],
)
def test_segment_accepts_each_kind(model, make):
    img = make()
    res = model.segment(img, [[30, 30]])
    assert res.mask.shape == img.shape[:2]


def test_flat_image_with_huge_values_is_black_not_an_error():
    # found by hypothesis: lo + 1 == lo above 2**53, which made the default limits invalid
    flat = np.full((3, 4), 2**53, np.int64)
    assert np.all(to_rgb_float(flat) == 0.0)
