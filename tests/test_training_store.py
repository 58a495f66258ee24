"""Training data streamed from disk: half-precision embeddings within tolerance, one batch held at a time."""

import gc
import tempfile
import weakref
from pathlib import Path

import numpy as np
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.model.embedding_cache import EmbeddingCache, stored_like
from napari_rpsam2.training import prepare
from napari_rpsam2.training.data import stack_from_arrays
from napari_rpsam2.training.losses import soft_dice_loss
from napari_rpsam2.training.trainer import TrainConfig, train_shift_block


def test_float16_embeddings_keep_the_decoder_within_tolerance(model, frame0, tmp_path):
    """The store writes float16 (half the bytes); logits move by < 0.1 % of their range, the Dice loss by < 1e-5."""
    image, labels, emb = frame0
    cache = EmbeddingCache(1, tmp_path / "half", disk_dtype="float16")
    cache.save_to_disk("sig", emb)
    full = EmbeddingCache(1, tmp_path / "full")
    full.save_to_disk("sig", emb)
    back = cache.load_from_disk("sig", "cpu")
    assert back.image_embed.dtype == torch.float32
    for name, t in back.tensors().items():  # exactly what :func:`stored_like` predicts
        assert torch.equal(t, stored_like(emb, "float16").tensors()[name]), name
    sizes = [next(c.disk_dir.glob("*.safetensors")).stat().st_size for c in (cache, full)]
    assert sizes[0] < 0.55 * sizes[1]
    rng = np.random.default_rng(0)
    pixels = np.argwhere(labels > 0)[rng.integers((labels > 0).sum(), size=8)]
    pts = torch.as_tensor(pixels[:, ::-1] / np.array(image.shape[1::-1]), dtype=torch.float32)[:, None]
    ones = torch.ones(8, 1, dtype=torch.int)
    ref, _ = model.backbone.decode(emb, pts, ones, True)
    got, _ = model.backbone.decode(back, pts, ones, True)
    assert float((got - ref).abs().max()) <= 1e-3 * float(ref.abs().max())
    target = torch.as_tensor(labels > 0, dtype=torch.float32)[None].expand(8, -1, -1)
    target = torch.nn.functional.interpolate(target[:, None], size=ref.shape[-2:], mode="bilinear")[:, 0]
    assert float((soft_dice_loss(got, target) - soft_dice_loss(ref, target)).abs().max()) < 1e-5


def test_training_holds_one_batch_of_slices_at_a_time(model, frame0, monkeypatch):
    """Four slices, batch 2: never more than two slices' embeddings alive; equal slices encoded once."""
    image, labels, _ = frame0
    stack = stack_from_arrays(np.stack([image] * 4), np.stack([(labels == 1).astype(np.uint8)] * 4))
    alive: list = []
    most = [0]
    real_load = prepare.Preparer.load

    def load(self, ref):
        gc.collect()
        most[0] = max(most[0], sum(1 for r in alive if r() is not None) + 1)
        found = real_load(self, ref)
        alive.append(weakref.ref(found.embedding.image_embed))
        return found

    monkeypatch.setattr(prepare.Preparer, "load", load)
    encodes = []
    real_encode = model.backbone.encode
    monkeypatch.setattr(model.backbone, "encode", lambda *a, **k: encodes.append(1) or real_encode(*a, **k))
    temp = set(Path(tempfile.gettempdir()).glob("rpsam2-train-*"))
    torch.manual_seed(0)
    fresh = RPSAM2(model.backbone, cache=EmbeddingCache())  # its own cache: the encoder must run once
    with tempfile.TemporaryDirectory() as out:
        result = train_shift_block(fresh, stack, Path(out) / "b.safetensors",
                                   TrainConfig(epochs=2, batch_size=2, clicks_per_object=1, grid_stride=48))
    assert len(result.history) == 2 and len(alive) == 8  # every slice read once per epoch
    assert most[0] <= 2, most
    assert len(encodes) == 1 and result.prepared == {"encoded": 1, "reused": 3, "targets": 1}
    assert set(Path(tempfile.gettempdir()).glob("rpsam2-train-*")) == temp  # the run's temporary store is gone
