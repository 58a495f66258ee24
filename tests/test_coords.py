"""Clicks map exactly into SAM2's frames and back, on non-square images too."""

import numpy as np
import pytest
import torch

from napari_rpsam2.model.coords import (
    clamp_straight_through,
    normalized_bounds,
    normalized_to_pixels,
    normalized_to_prompt,
    pixels_to_normalized,
)


@pytest.mark.parametrize("hw", [(768, 1024), (540, 960), (720, 1280), (1, 1), (1000, 37)])
def test_round_trip_is_exact_numpy_and_torch(hw):
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.5, 1, (50, 2)) * np.array(hw) - 0.5
    back = normalized_to_pixels(pixels_to_normalized(pts, hw), hw)
    np.testing.assert_allclose(back, pts, atol=1e-9)
    t = torch.as_tensor(pts, dtype=torch.float64)
    back_t = normalized_to_pixels(pixels_to_normalized(t, hw), hw)
    torch.testing.assert_close(back_t, t, atol=1e-9, rtol=0)


def test_normalized_frame_is_anisotropic_and_pixel_centred():
    hw = (768, 1024)
    # the first and last pixel centres, and the image centre
    pts = np.array([[0, 0], [767, 1023], [383.5, 511.5]])
    xy = pixels_to_normalized(pts, hw)
    np.testing.assert_allclose(xy[0], [0.5 / 1024, 0.5 / 768])
    np.testing.assert_allclose(xy[1], [1 - 0.5 / 1024, 1 - 0.5 / 768])
    np.testing.assert_allclose(xy[2], [0.5, 0.5])


def test_prompt_coordinates_land_on_pixel_centres_in_the_1024_frame():
    # SAM2's prompt encoder adds 0.5; the encoded position must be x * 1024.
    hw = (768, 1024)
    pts = torch.tensor([[100.0, 200.0]], dtype=torch.float64)
    xy = pixels_to_normalized(pts, hw)
    encoded = normalized_to_prompt(xy, 1024) + 0.5
    expected = torch.tensor([[(200 + 0.5) / 1024 * 1024, (100 + 0.5) / 768 * 1024]], dtype=torch.float64)
    torch.testing.assert_close(encoded, expected)


def test_straight_through_clamp_keeps_points_inside_and_gradients_alive():
    hw = (100, 50)
    lo, hi = normalized_bounds(hw)
    pts = torch.tensor([[-0.3, 0.5], [1.7, 1.2], [0.4, 0.6]], dtype=torch.float64, requires_grad=True)
    out = clamp_straight_through(pts, hw)
    assert torch.all(out[:, 0] >= lo[0]) and torch.all(out[:, 0] <= hi[0])
    assert torch.all(out[:, 1] >= lo[1]) and torch.all(out[:, 1] <= hi[1])
    torch.testing.assert_close(out[2], pts[2].detach())
    out.sum().backward()
    assert torch.all(pts.grad == 1.0), "a clamped point must still receive its gradient"
    rc = normalized_to_pixels(out.detach(), hw)
    assert rc[:, 0].min() >= 0 and rc[:, 0].max() <= hw[0] - 1 + 1e-9
    assert rc[:, 1].min() >= 0 and rc[:, 1].max() <= hw[1] - 1 + 1e-9
