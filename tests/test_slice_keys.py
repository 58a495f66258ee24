"""Embedding-cache keys of napari slices never let one image be served another image's embeddings."""

from __future__ import annotations

import gc

import numpy as np
import pytest

napari_layers = pytest.importorskip("napari.layers")

from napari_rpsam2._widgets._slicing import slice_cache_key  # noqa: E402


def test_deleted_layers_never_hand_their_key_to_a_new_image():
    """Python reuses id() after a layer is freed; a new image must still get a key of its own."""
    seen = set()
    for i in range(40):
        layer = napari_layers.Image(np.full((3, 8, 8), i, dtype=np.uint8))
        key = slice_cache_key(layer, (1,))
        assert key not in seen, f"image {i} got the key of an earlier, deleted image"
        seen.add(key)
        del layer
        gc.collect()


def test_key_follows_the_data_not_the_array_object():
    data = np.zeros((2, 8, 8), dtype=np.uint8)
    a, b = napari_layers.Image(data), napari_layers.Image(data)
    assert slice_cache_key(a, (0,)) != slice_cache_key(b, (0,))
    assert slice_cache_key(a, (0,)) == slice_cache_key(a, (0,))
    assert slice_cache_key(a, (0,)) != slice_cache_key(a, (1,))
    before = slice_cache_key(a, (0,))
    a.data = np.ones((2, 8, 8), dtype=np.uint8)  # a script (or a plugin) replaces the image
    assert slice_cache_key(a, (0,)) != before
