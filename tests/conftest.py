"""Shared fixtures: one random-weight SAM2 tiny model and its embeddings per session.

The encoder takes seconds per slice on a CPU, so every test that only needs
an embedding shares these session-scoped fixtures.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.sample_data import make_instrument_stack

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def model() -> RPSAM2:
    """SAM2.1 hiera-tiny with seeded random weights and a fresh (identity) shift block."""
    return RPSAM2.load("sam2.1_hiera_tiny", sam2_weights="random", device="cpu", seed=0)


@pytest.fixture(scope="session")
def instrument_stack() -> tuple[np.ndarray, np.ndarray]:
    """The sample stack: (3, 256, 320, 3) uint8 RGB and (3, 256, 320) int32 labels."""
    return make_instrument_stack()


@pytest.fixture(scope="session")
def frame0(model, instrument_stack):
    """First frame, its labels and its (cached) embedding."""
    image, labels = instrument_stack
    return image[0], labels[0], model.embed(image[0])
