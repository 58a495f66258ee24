"""Shared fixtures: one random-weight SAM2 tiny model and its embeddings per session.

The encoder takes seconds per slice on a CPU, so every test that only needs
an embedding shares these session-scoped fixtures.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
import torch
import torchvision.ops  # noqa: F401  (loads triton now: loading it after a napari viewer exists segfaults)

from napari_rpsam2 import RPSAM2
from napari_rpsam2.sample_data import make_instrument_stack

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
# The viewer's disk embedding cache is on by default (the user's cache folder): tests never write there;
# the tests about it set their own folder.
os.environ["NAPARI_RPSAM2_CACHE_DIR"] = "off"

_GUI_FIXTURES = {"make_napari_viewer", "make_napari_viewer_proxy", "qtbot", "viewer_model"}


def _display_available() -> bool:
    """A real display, or Xvfb for pytest-xvfb to start (napari needs OpenGL)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or shutil.which("Xvfb") is not None


def pytest_collection_modifyitems(config, items):
    """Skip GUI tests, with the reason, where no display can be had."""
    if _display_available():
        return
    skip = pytest.mark.skip(reason="no display: install Xvfb and Mesa (see .ci/run) to run the GUI tests")
    for item in items:
        if _GUI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(skip)


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


@pytest.fixture(scope="session")
def moving_model(model) -> RPSAM2:
    """The session backbone and cache with a shift block that really moves clicks (up to 40 % of an axis)."""
    from napari_rpsam2.model import ShiftBlock

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        block = ShiftBlock()
        torch.nn.init.normal_(block.offset_head.weight, std=0.5)
        torch.nn.init.normal_(block.offset_head.bias, std=1.0)
        block.scale_logit.data.fill_(float(np.log(0.4 / 0.6)))
    return RPSAM2(model.backbone, shift_block=block, cache=model.cache)


@pytest.fixture(autouse=True)
def _workers_finish_before_the_next_test(request):
    """A GUI test may end while a dock's thread worker still runs (e.g. background embedding).

    Wait for it after the test, so it never outlives the session (Qt aborts a
    process whose thread pool still runs at exit) nor slows the next test.
    """
    yield
    if _GUI_FIXTURES & set(request.fixturenames):
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(300_000)
