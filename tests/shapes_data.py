"""A generated two-class data set: bright discs (class 1) and squares (class 2) on noise."""

from __future__ import annotations

import numpy as np


def discs_and_squares(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` grey images ``(n, size, size)`` float32 and their class maps (0 background, 1 disc, 2 square).

    Each image holds one or two discs and one or two squares (radius / half-side 6–10 px) that
    differ only by shape, on Gaussian noise; a later shape covers an earlier one.
    """
    rng = np.random.default_rng(seed)
    images = rng.normal(0.3, 0.08, (n, size, size)).astype(np.float32)
    classes = np.zeros((n, size, size), np.int32)
    rr, cc = np.mgrid[:size, :size]
    for i in range(n):
        for k in (1, 2):
            for _ in range(rng.integers(1, 3)):
                r0, c0 = rng.integers(10, size - 10, 2)
                rad = rng.integers(6, 11)
                if k == 1:
                    m = (rr - r0) ** 2 + (cc - c0) ** 2 <= rad ** 2
                else:
                    m = (abs(rr - r0) <= rad) & (abs(cc - c0) <= rad)
                classes[i][m] = k
                images[i][m] += 0.4 + rng.normal(0, 0.05)
    return images, classes
