"""Bad images: each one is either handled correctly or refused with a clear ImageError."""

from __future__ import annotations

import contextlib
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from napari_rpsam2.model import ImageEmbedding, ImageError
from napari_rpsam2.model.image_adapter import LargeImageWarning, encoder_picture, to_rgb_float


@contextlib.contextmanager
def fake_encoder(backbone, base: ImageEmbedding, calls: list | None = None):
    """Replace the (slow) encoder by one returning ``base``'s tensors at the picture's size."""

    def encode(picture: np.ndarray) -> ImageEmbedding:
        if calls is not None:
            calls.append(picture.shape)
        assert picture.dtype == np.float32 and picture.ndim == 3 and picture.shape[-1] == 3
        return ImageEmbedding(base.image_embed, base.high_res_feats, tuple(picture.shape[:2]))

    original = backbone.encode
    backbone.encode = encode
    try:
        yield
    finally:
        backbone.encode = original


BAD_IMAGES = [
    ("empty rows", np.zeros((0, 5)), "empty"),
    ("empty colour", np.zeros((5, 0, 3), np.uint8), "empty"),
    ("object dtype", np.zeros((8, 8), dtype=object), "astype(float)"),
    ("complex", np.ones((8, 8), dtype=np.complex64), "np.abs"),
    ("strings", np.full((8, 8), "a"), "must hold numbers"),
    ("datetimes", np.zeros((8, 8), dtype="datetime64[s]"), "must hold numbers"),
    ("1D", np.zeros(16), "got 1 dimensions"),
    ("4D", np.zeros((2, 2, 8, 8)), "pick a single slice"),
    ("6 channels", np.zeros((8, 8, 6)), "too many for colour channels"),
    ("ambiguous 2 channels", np.zeros((3, 4, 2)), "cannot tell"),
    ("all NaN", np.full((8, 8), np.nan), "no finite values"),
    ("all inf", np.full((8, 8), np.inf, dtype=np.float32), "no finite values"),
]


@pytest.mark.parametrize("name,image,fragment", BAD_IMAGES, ids=[b[0] for b in BAD_IMAGES])
def test_bad_image_is_refused_with_a_clear_message(model, frame0, name, image, fragment):
    with pytest.raises(ImageError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        to_rgb_float(image)
    calls: list = []
    with fake_encoder(model.backbone, frame0[2], calls), pytest.raises(ImageError):
        model.segment(image, [[0, 0]])
    assert calls == [], "a bad image must be refused before the encoder runs"


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan"), "x"])
def test_bad_gamma_is_refused(gamma):
    with pytest.raises(ImageError, match="gamma"):
        to_rgb_float(np.arange(16.0).reshape(4, 4), gamma=gamma)


@pytest.mark.parametrize("limits", [(5, 5), (6, 2), (float("nan"), 1), (0, float("inf")), (1,), "ab"])
def test_bad_contrast_limits_are_refused(limits):
    with pytest.raises(ImageError, match="contrast limits"):
        to_rgb_float(np.arange(16.0).reshape(4, 4), contrast_limits=limits)


def test_nan_and_inf_pixels_map_to_black_and_white():
    image = np.array([[np.nan, 0.0, 10.0], [np.inf, -np.inf, 5.0]], dtype=np.float32)
    out = to_rgb_float(image)
    np.testing.assert_allclose(out[..., 0], [[0, 0, 1], [1, 0, 0.5]], atol=1e-6)
    assert np.isfinite(out).all()


def test_extreme_float_range_keeps_order():
    out = to_rgb_float(np.array([[-1e308, 0.0, 1e308]]))[0, :, 0]
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0], atol=1e-6)


def test_bool_int64_float16_uint16_images():
    mask = np.eye(6, dtype=bool)
    np.testing.assert_array_equal(to_rgb_float(mask)[..., 1], mask.astype(np.float32))
    big = np.array([[0, 2**40], [2**41, 2**42]], dtype=np.int64)
    np.testing.assert_allclose(to_rgb_float(big)[..., 0], [[0, 0.25], [0.5, 1.0]], atol=1e-6)
    half = np.array([[0, 1], [2, 4]], dtype=np.float16)
    np.testing.assert_allclose(to_rgb_float(half)[..., 2], [[0, 0.25], [0.5, 1]], atol=1e-3)
    u16 = np.array([[0, 65535]], dtype=np.uint16)
    np.testing.assert_allclose(to_rgb_float(u16, contrast_limits=(0, 65535))[0, :, 0], [0, 1])


def test_channel_layouts():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (8, 9, 1), dtype=np.uint8)], axis=-1)
    np.testing.assert_array_equal(to_rgb_float(rgba), to_rgb_float(rgb))  # alpha is dropped
    two = rng.random((8, 9, 2))
    out = to_rgb_float(two, contrast_limits=(0, 1))
    np.testing.assert_allclose(out[..., :2], two, atol=1e-6)
    assert not out[..., 2].any()  # napari's red/green, no blue
    five = rng.random((8, 9, 5))
    out = to_rgb_float(five, contrast_limits=(0, 1))
    np.testing.assert_allclose(out[..., 0], five.mean(-1), atol=1e-6)
    one = rng.random((3, 4, 1))  # too small to guess; rgb=True says it is one channel
    np.testing.assert_allclose(to_rgb_float(one, contrast_limits=(0, 1), rgb=True)[..., 1], one[..., 0], atol=1e-6)


def test_one_pixel_image_segments_with_the_real_encoder(model):
    res = model.segment(np.array([[7]], dtype=np.uint16), [[0, 0]])
    assert res.mask.shape == (1, 1)
    np.testing.assert_allclose(res.points, [[0, 0]])


def test_odd_images_segment_at_their_own_size(model, frame0):
    _, _, base = frame0
    images = {
        "nan float": np.where(np.eye(40, 50, dtype=bool), np.nan, 1.0),
        "bool": np.eye(40, 50, dtype=bool),
        "int64": np.arange(40 * 50, dtype=np.int64).reshape(40, 50) * 10**12,
        "rgba": np.zeros((40, 50, 4), np.uint8),
        "5 channels": np.ones((40, 50, 5), np.float32),
        "1x300": np.linspace(0, 1, 300)[None],
    }
    with fake_encoder(model.backbone, base):
        for name, image in images.items():
            res = model.segment(image, [[0, image.shape[1] - 1]])
            assert res.mask.shape == image.shape[:2], name


def _stripes(shape, dtype=np.uint8) -> np.ndarray:
    image = np.zeros(shape, dtype)
    h, w = shape[:2]
    image[h // 4: h // 2, w // 8: max(1, w // 3)] = 200
    return image


def test_huge_image_is_downscaled_before_encoding_and_masks_keep_full_size(model, frame0):
    _, _, base = frame0
    image = _stripes((8000, 8000, 3))
    calls: list = []
    with fake_encoder(model.backbone, base, calls), pytest.warns(LargeImageWarning, match="downscaled to 2048×2048"):
        res = model.segment(image, [[4000, 4000]], refine=True)
    assert calls == [(2048, 2048, 3)]
    assert res.mask.shape == (8000, 8000)
    assert 0 <= res.points[0, 0] <= 7999 and 0 <= res.points[0, 1] <= 7999


def test_huge_image_never_gets_a_full_float_copy():
    image = _stripes((8000, 8000, 3))
    float_copy = image.size * 4  # what to_rgb_float on the full image would hold at least
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LargeImageWarning)
            picture = encoder_picture(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert picture.shape == (2048, 2048, 3) and picture.dtype == np.float32
    assert peak < float_copy / 4, f"peak {peak / 2**20:.0f} MiB while encoding-picture"
    # geometry survives: the bright block starts at row 2000/8000, col 1000/8000
    assert picture[511, 300, 0] == 0 and picture[513, 300, 0] > 0.7
    assert picture[1000, 255, 0] == 0 and picture[1000, 257, 0] > 0.7


@pytest.mark.parametrize("shape", [(3001, 2500), (2600, 7), (4100, 1)])
def test_downscaled_picture_is_what_sam2_would_have_seen(shape):
    rng = np.random.default_rng(1)
    image = _stripes(shape, np.float32) + rng.random(shape, dtype=np.float32) * 5
    with pytest.warns(LargeImageWarning):
        small = encoder_picture(image)
    full = to_rgb_float(image)
    assert max(small.shape[:2]) == 2048

    def sam2_input(picture):
        x = torch.from_numpy(picture).permute(2, 0, 1)[None]
        return F.interpolate(x, size=(1024, 1024), mode="bilinear", antialias=True, align_corners=False)

    diff = (sam2_input(small) - sam2_input(full)).abs()
    assert float(diff.mean()) < 0.01
    assert float(small.mean()) == pytest.approx(float(full.mean()), abs=1e-4)  # area averaging keeps the mean
