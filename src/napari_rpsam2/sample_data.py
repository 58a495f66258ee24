"""A small deterministic annotated stack with instrument-like objects.

Used by napari's *File ▸ Open Sample* menu, the tests and the benchmarks, so
anyone can try every widget without data of their own.
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_instrument_stack", "CLASS_NAMES", "sample_stack"]

CLASS_NAMES = {1: "forceps", 2: "knife"}


def _bar(shape: tuple[int, int], start: tuple[float, float], end: tuple[float, float],
         half_width: float) -> np.ndarray:
    """Mask of a thick segment from ``start`` to ``end`` (row, col)."""
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    p0 = np.asarray(start, np.float32)
    d = np.asarray(end, np.float32) - p0
    length2 = float(d @ d)
    t = np.clip(((rr - p0[0]) * d[0] + (cc - p0[1]) * d[1]) / length2, 0.0, 1.0)
    dist2 = (rr - p0[0] - t * d[0]) ** 2 + (cc - p0[1] - t * d[1]) ** 2
    return dist2 <= half_width**2


def make_instrument_stack(
    n_slices: int = 3, shape: tuple[int, int] = (256, 320), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Build ``(image, labels)``: an RGB stack and its instance labels.

    Parameters
    ----------
    n_slices : int
        Number of frames; the instruments move a little from frame to frame.
    shape : (int, int)
        Height and width of each frame.
    seed : int
        Seed of the background texture (the result is deterministic).

    Returns
    -------
    image : ndarray (n_slices, H, W, 3) uint8
        A reddish textured background (like an eye under a microscope) with
        two grey metallic instruments entering from the border.
    labels : ndarray (n_slices, H, W) int32
        0 background, 1 the forceps, 2 the knife (``CLASS_NAMES``).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.empty((n_slices, h, w, 3), np.uint8)
    labels = np.zeros((n_slices, h, w), np.int32)
    pupil = ((rr - h * 0.5) ** 2 + (cc - w * 0.5) ** 2) < (0.38 * min(h, w)) ** 2
    for i in range(n_slices):
        noise = rng.normal(0.0, 8.0, (h, w)).astype(np.float32)
        base = np.stack([150 + noise, 60 + noise * 0.5, 50 + noise * 0.5], axis=-1)
        base[pupil] = base[pupil] * 0.6 + np.array([90, 40, 30], np.float32) * 0.4
        shift = 6.0 * i
        forceps = _bar(shape, (h * 0.95, w * 0.05 + shift), (h * 0.45, w * 0.45 + shift), 0.035 * h)
        forceps |= _bar(shape, (h * 0.45, w * 0.45 + shift), (h * 0.38, w * 0.52 + shift), 0.02 * h)
        knife = _bar(shape, (h * 0.10, w * 0.98 - shift), (h * 0.50, w * 0.62 - shift), 0.028 * h)
        knife |= _bar(shape, (h * 0.50, w * 0.62 - shift), (h * 0.56, w * 0.57 - shift), 0.012 * h)
        shade = 0.75 + 0.25 * np.cos(cc / w * 6.0 + i)[..., None]
        metal = np.stack([200 + noise, 205 + noise, 210 + noise], axis=-1) * shade
        base[forceps] = metal[forceps]
        base[knife] = metal[knife] * 0.85
        image[i] = np.clip(base, 0, 255).astype(np.uint8)
        labels[i][forceps] = 1
        labels[i][knife & ~forceps] = 2
    return image, labels


def sample_stack() -> list[tuple]:
    """npe2 sample-data provider: the image stack and its labels as two layers."""
    image, labels = make_instrument_stack()
    return [
        (image, {"name": "instruments", "rgb": True}, "image"),
        (labels, {"name": "instrument labels", "opacity": 0.5}, "labels"),
    ]
