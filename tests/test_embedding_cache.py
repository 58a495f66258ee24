"""Embedding cache: hits, misses, LRU eviction, disk signatures, precompute."""

import numpy as np
import pytest
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.model import EmbeddingCache, ImageEmbedding, slice_signature


def _fake(hw=(8, 8), value=0.0) -> ImageEmbedding:
    return ImageEmbedding(torch.full((1, 256, 64, 64), value), [torch.zeros(1, 32, 256, 256),
                                                                 torch.zeros(1, 64, 128, 128)], hw)


def test_hit_miss_and_lru_eviction_within_budget():
    one = _fake().nbytes
    cache = EmbeddingCache(max_bytes=int(2.5 * one))
    cache.put("a", _fake())
    cache.put("b", _fake())
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", _fake())  # over budget: "b" (least recent) goes
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.get("b") is None
    assert cache.stats.hits == 1 and cache.stats.misses == 1 and cache.stats.evictions == 1
    assert cache.nbytes <= cache.max_bytes
    with pytest.raises(ValueError):
        EmbeddingCache(max_bytes=0)


def test_signature_follows_content_and_display_mapping():
    a = np.zeros((4, 5), np.uint8)
    b = a.copy()
    b[0, 0] = 1
    assert slice_signature(a, None) == slice_signature(a.copy(), None)
    assert slice_signature(a, None) != slice_signature(b, None)
    assert slice_signature(a, (0, 255)) != slice_signature(a, (0, 100))
    assert slice_signature(a, None) != slice_signature(a.astype(np.uint16), None)


def test_disk_cache_survives_a_new_session_and_notices_changed_data(tmp_path, model, monkeypatch):
    calls = []
    real = model.backbone.encode
    monkeypatch.setattr(model.backbone, "encode", lambda rgb: calls.append(1) or real(rgb))
    image = np.random.default_rng(1).integers(0, 255, (40, 60), dtype=np.uint8)

    first = RPSAM2(model.backbone, cache=EmbeddingCache(disk_dir=tmp_path))
    emb1 = first.embed(image)
    assert len(calls) == 1 and len(list(tmp_path.glob("*.safetensors"))) == 1

    reopened = RPSAM2(model.backbone, cache=EmbeddingCache(disk_dir=tmp_path))
    emb2 = reopened.embed(image)
    assert len(calls) == 1, "a reopened image must come from the disk cache"
    assert reopened.cache.stats.disk_hits == 1
    assert torch.equal(emb1.image_embed, emb2.image_embed) and emb2.image_hw == (40, 60)

    changed = image.copy()
    changed[0, 0] ^= 1
    reopened.embed(changed)
    assert len(calls) == 2, "a changed image must be encoded again"

    # a damaged cache file is only a miss: recomputed and rewritten
    for f in tmp_path.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    third = RPSAM2(model.backbone, cache=EmbeddingCache(disk_dir=tmp_path))
    third.embed(image)
    assert len(calls) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_precompute_reports_progress_and_cancels(model, monkeypatch):
    stack = np.random.default_rng(2).integers(0, 255, (4, 24, 32), dtype=np.uint8)
    calls = []
    real = model.backbone.encode
    monkeypatch.setattr(model.backbone, "encode", lambda rgb: calls.append(1) or real(rgb))
    fresh = RPSAM2(model.backbone, cache=EmbeddingCache())
    seen = []
    done = fresh.precompute(stack, key="layer-1", progress=lambda d, t: seen.append((d, t)),
                            cancel=lambda: len(seen) >= 2)
    assert done == 2 and seen == [(1, 4), (2, 4)] and len(calls) == 2
    assert fresh.precompute(stack, key="layer-1") == 4
    assert len(calls) == 4, "already embedded slices are not encoded again"
    assert fresh.is_cached(stack[3], key=("layer-1", 3))
    # clicking a precomputed slice never runs the encoder
    fresh.segment(stack[2], [[5, 5]], key=("layer-1", 2))
    assert len(calls) == 4


def test_precompute_within_budget_keeps_the_first_slice(model, monkeypatch):
    """Background embedding stops at the memory budget instead of evicting the slice being annotated."""
    stack = np.random.default_rng(3).integers(0, 255, (6, 24, 32), dtype=np.uint8)
    probe = RPSAM2(model.backbone, cache=EmbeddingCache()).embed(stack[0])
    fresh = RPSAM2(model.backbone, cache=EmbeddingCache(max_bytes=2 * probe.nbytes + probe.nbytes // 2))
    seen = []
    done = fresh.precompute(stack, key="layer", indices=[3, 4, 2, 5, 1, 0], within_budget=True,
                            progress=lambda d, t: seen.append((d, t)))
    assert done == 2 and seen[-1] == (2, 2)
    assert fresh.is_cached(stack[3], key=("layer", 3)) and fresh.is_cached(stack[4], key=("layer", 4))
    assert fresh.cache.stats.evictions == 0
    assert fresh.precompute(stack, key="layer", indices=[3, 4, 2]) == 3  # without the budget: every slice asked


def test_outward_order_visits_the_nearest_slices_first():
    from napari_rpsam2._widgets._logic import outward_order

    assert outward_order(3, 6) == [3, 4, 2, 5, 1, 0]
    assert outward_order(0, 3) == [0, 1, 2] and outward_order(2, 3) == [2, 1, 0]
    assert sorted(outward_order(7, 20)) == list(range(20))


def test_viewer_workspace_keeps_embeddings_on_disk_across_restarts(model, monkeypatch, tmp_path):
    """A restarted napari (a new workspace on the default folder) finds the slices encoded before."""
    from napari_rpsam2.app.workspace import Workspace, default_cache_dir

    monkeypatch.setenv("NAPARI_RPSAM2_CACHE_DIR", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    image = np.random.default_rng(4).integers(0, 255, (24, 32), dtype=np.uint8)
    calls = []
    real = model.backbone.encode
    monkeypatch.setattr(model.backbone, "encode", lambda rgb: calls.append(1) or real(rgb))
    for session in range(2):
        ws = Workspace(cache_dir=default_cache_dir())
        ws.set_model(RPSAM2(model.backbone))
        ws.model.embed(image, key=("layer", session), contrast_limits=(0, 200))
    assert len(calls) == 1 and ws.cache.stats.disk_hits == 1
    ws.model.embed(image, key=("layer", 1), contrast_limits=(0, 100))  # another contrast: another embedding
    assert len(calls) == 2
    monkeypatch.setenv("NAPARI_RPSAM2_CACHE_DIR", "off")
    assert default_cache_dir() is None


def test_disk_cache_keeps_to_its_size_limit_dropping_the_least_recently_used(model, tmp_path):
    stack = np.random.default_rng(5).integers(0, 255, (3, 24, 32), dtype=np.uint8)
    fresh = RPSAM2(model.backbone, cache=EmbeddingCache(disk_dir=tmp_path))
    fresh.embed(stack[0])
    one_file = sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))
    fresh.cache.disk_max_bytes = int(2.5 * one_file)
    fresh.embed(stack[1])
    fresh.embed(stack[2])
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    again = RPSAM2(model.backbone, cache=EmbeddingCache(disk_dir=tmp_path))
    again.embed(stack[2])
    again.embed(stack[0])  # the oldest went first
    assert again.cache.stats.disk_hits == 1


def test_an_unusable_cache_folder_only_warns(tmp_path):
    from napari_rpsam2.app.workspace import Workspace

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="no disk embedding cache"):
        ws = Workspace(cache_dir=blocker / "cache")
    assert ws.cache.disk_dir is None
