"""SAM2 at a smaller input (sizes read from the model) and embeddings found by content under any key."""

import numpy as np
import pytest
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.app import Workspace
from napari_rpsam2.model import EmbeddingCache, SAM2Backbone, WeightsError
from napari_rpsam2.model.backbone import IMAGE_SIZE_ENV


def test_sizes_come_from_the_model(model, frame0):
    image, labels, emb = frame0
    b = model.backbone
    assert b.input_size == b.model.image_size and b.embed_size == b.input_size // 16
    assert emb.image_embed.shape[-2:] == (b.embed_size, b.embed_size)
    assert [f.shape[-1] for f in emb.high_res_feats] == [4 * b.embed_size, 2 * b.embed_size]
    xy = torch.tensor([[[0.4, 0.5]]])
    logits, _ = b.decode(emb, xy, torch.ones(1, 1), multimask=True)
    assert logits.shape[-2:] == (b.low_res_size, b.low_res_size)
    if b.input_size != 1024:  # embeddings at another size never share a cache entry with SAM2's own
        assert b.weights_signature.endswith(f"|{b.input_size}px")
    rows, cols = np.nonzero(labels == 1)
    assert model.segment(image, [[rows[0], cols[0]]]).mask.shape == image.shape[:2]


def test_a_bad_input_size_is_refused_before_building(monkeypatch):
    with pytest.raises(WeightsError, match="multiple of 32"):
        SAM2Backbone.build("tiny", "random", device="cpu", image_size=100)
    monkeypatch.setenv(IMAGE_SIZE_ENV, "big")
    with pytest.raises(WeightsError, match=f"{IMAGE_SIZE_ENV}='big' is not a whole number"):
        RPSAM2.load("tiny", "random", device="cpu")


def test_a_picture_cached_under_one_key_is_found_under_another(model, monkeypatch):
    image = np.random.default_rng(7).integers(0, 255, (24, 40), dtype=np.uint8)
    calls = []
    real = model.backbone.encode
    monkeypatch.setattr(model.backbone, "encode", lambda rgb: calls.append(1) or real(rgb))
    one = real(np.zeros((8, 8, 3), np.float32)).nbytes
    viewer_a = RPSAM2(model.backbone, cache=EmbeddingCache(int(2.5 * one)))
    viewer_b = RPSAM2(model.backbone, cache=viewer_a.cache)  # e.g. a second layer showing the same picture
    first = viewer_a.embed(image, key=("layer-a", 0))
    assert viewer_b.is_cached(image, key=("layer-b", 0))
    assert viewer_b.embed(image, key=("layer-b", 0)) is first and calls == [1]
    assert viewer_a.cache.stats.content_hits == 1
    assert viewer_a.cache.nbytes == first.nbytes  # held under two keys, counted once
    viewer_a.cache.put("other", real(np.ones((8, 8, 3), np.float32)))
    viewer_a.cache.put("third", real(np.ones((8, 8, 3), np.float32) / 2))  # over budget: the picture goes
    assert not viewer_b.is_cached(image, key=("layer-c", 0))
    viewer_b.embed(image, key=("layer-c", 0))
    assert calls == [1, 1]


def test_workspaces_can_share_one_cache_and_start_without_background_embedding():
    from napari_rpsam2._widgets._workspace import set_workspace_factory, workspace_for

    class Viewer:  # any object napari would hand a dock
        pass

    shared = EmbeddingCache()
    set_workspace_factory(lambda: Workspace(cache=shared, background_embedding=False))
    try:
        a, b = workspace_for(Viewer()), workspace_for(Viewer())
        assert a is not b and a.cache is shared and b.cache is shared and not a.background_embedding
    finally:
        set_workspace_factory(None)
    plain = workspace_for(Viewer())
    assert plain.cache is not shared and plain.background_embedding
