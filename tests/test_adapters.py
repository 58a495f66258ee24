"""SAM2 adapters: untrained they change nothing (image and video paths), trained they lower the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from small_sam2 import small_backbone

from napari_rpsam2.model import CheckpointError
from napari_rpsam2.model.adapters import AdapterConfig, SAM2Adapters, load_adapters, save_adapters
from napari_rpsam2.model.coords import pixels_to_normalized
from napari_rpsam2.sample_data import make_instrument_stack
from napari_rpsam2.training.adapters import FinetuneConfig, adapter_loss, finetune_adapters, object_prompts
from napari_rpsam2.training.data import stack_from_arrays


@pytest.fixture
def attached(model):
    """Fresh (zero-initialised) adapters on the session SAM2, taken off again after the test."""
    adapters = SAM2Adapters(model.backbone.model)
    model.backbone.use_adapters(adapters)
    yield adapters
    model.backbone.use_adapters(None)


def _decode(backbone, emb):
    xy = torch.as_tensor(pixels_to_normalized(np.array([[128.0, 160.0], [40.0, 60.0]]), emb.image_hw))
    with torch.inference_mode():
        return backbone.decode(emb, xy[None].float(), torch.tensor([[1, 0]]), False)


def _memory_attention(sam2):
    """SAM2's memory attention on fixed random inputs (what each propagated frame goes through)."""
    g = torch.Generator().manual_seed(0)
    curr, pos = torch.randn(4096, 1, 256, generator=g), torch.randn(4096, 1, 256, generator=g)
    mem, mem_pos = torch.randn(4096, 1, 64, generator=g), torch.randn(4096, 1, 64, generator=g)  # one memory frame
    with torch.inference_mode():
        return sam2.memory_attention(curr=curr, curr_pos=pos, memory=mem, memory_pos=mem_pos)


def test_adapters_are_under_one_percent_of_sam2(model, capsys):
    adapters = SAM2Adapters(model.backbone.model)
    share = adapters.parameter_count() / model.backbone.parameter_count()
    print(f"adapters: {adapters.parameter_count():,} parameters, {100 * share:.2f} % of SAM2 "
          f"({len(adapters.adapters)} adapters)")
    assert share < 0.01
    assert {n.split("_")[0] for n in adapters.adapters} == {"encoder", "neck", "memory", "decoder"}


def test_untrained_adapters_leave_the_image_path_bit_identical(model, frame0):
    image, _, plain = frame0
    plain_logits, plain_iou = _decode(model.backbone, plain)
    adapters = SAM2Adapters(model.backbone.model)
    model.backbone.use_adapters(adapters)
    try:
        emb = model.backbone.encode(image.astype(np.float32) / 255)
        logits, iou = _decode(model.backbone, emb)
    finally:
        model.backbone.use_adapters(None)
    assert torch.equal(emb.image_embed, plain.image_embed)
    assert all(torch.equal(a, b) for a, b in zip(emb.high_res_feats, plain.high_res_feats))
    assert torch.equal(logits, plain_logits) and torch.equal(iou, plain_iou)


def test_untrained_adapters_leave_the_video_path_bit_identical(model, attached):
    sam2 = model.backbone.model
    with_adapters = _memory_attention(sam2)
    attached.detach()
    assert torch.equal(with_adapters, _memory_attention(sam2))


def test_every_adapter_place_changes_sam2_once_trained(model, frame0):
    """The hooks really sit on SAM2's modules: non-zero adapters move the encoder, memory and decoder outputs."""
    _, _, emb = frame0
    sam2 = model.backbone.model
    plain_memory, plain_logits = _memory_attention(sam2), _decode(model.backbone, emb)[0]
    for place in ("memory", "decoder"):
        only = {k: k == place for k in ("encoder", "memory", "decoder", "neck")}
        adapters = SAM2Adapters(sam2, AdapterConfig(**only))
        with torch.no_grad():
            for p in adapters.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.backbone.use_adapters(adapters)
        try:
            logits = _decode(model.backbone, emb)[0]
            if place == "memory":
                assert not torch.equal(_memory_attention(sam2), plain_memory)
        finally:
            model.backbone.use_adapters(None)
        assert torch.equal(logits, plain_logits) == (place != "decoder")


def test_adapters_change_the_embedding_cache_key(model, attached):
    plain = model.backbone._plain_signature
    assert model.backbone.weights_signature.startswith(plain + "|adapters:")
    model.backbone.use_adapters(None)
    assert model.backbone.weights_signature == plain


@pytest.fixture(scope="module")
def small_sam2():
    """SAM2.1-tiny built for a 256² input (16× cheaper encoder: fine for a training-loss test).  A module's own copy: its tests train adapters on it."""
    return small_backbone()


def test_fine_tuning_lowers_the_loss_on_a_fixed_batch(small_sam2):
    image, labels = make_instrument_stack(n_slices=1, shape=(128, 160))
    stack = stack_from_arrays(image, labels, merge_gap=0)
    adapters = SAM2Adapters(small_sam2.model, AdapterConfig(memory=False))
    small_sam2.use_adapters(adapters)
    try:
        masks = [stack.object_mask(o) for o in stack.objects()]
        rng = np.random.default_rng(3)
        prompts = [object_prompts(m, rng, 1, 0.0) for m in masks]

        def loss() -> float:
            with torch.no_grad():
                emb = small_sam2.encode(image[0].astype(np.float32) / 255)
                return float(adapter_loss(small_sam2, emb, masks, prompts))

        before = loss()
        history = finetune_adapters(small_sam2, stack, FinetuneConfig(epochs=6, lr=3e-3, box_jitter=0.0))
        after = loss()
    finally:
        small_sam2.use_adapters(None)
    assert len(history) == 6 and after < 0.8 * before, (before, after, [h.loss for h in history])


def test_adapter_files_round_trip_and_name_their_backbone(model, frame0, tmp_path):
    _, _, emb = frame0
    adapters = SAM2Adapters(model.backbone.model, AdapterConfig(encoder=False, neck=False, memory=False))
    with torch.no_grad():
        for p in adapters.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = save_adapters(tmp_path / "a.safetensors", adapters, model.backbone.name)
    model.backbone.use_adapters(adapters)
    try:
        expected = _decode(model.backbone, emb)[0]
        header = model.backbone.load_adapters(path)
        assert header["backbone"] == model.backbone.name and header["config"]["rank"] == 16
        assert torch.equal(_decode(model.backbone, emb)[0], expected)
    finally:
        model.backbone.use_adapters(None)
    with pytest.raises(CheckpointError, match="sam2.1_hiera_small"):
        load_adapters(path, model.backbone.model, "sam2.1_hiera_small")
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_adapters(tmp_path / "bad.safetensors", model.backbone.model, model.backbone.name)


def test_work_folder_records_name_the_loaded_adapters(model, attached):
    from napari_rpsam2.app.workfolder import model_provenance

    record = model_provenance(model, refine=True)
    assert record["adapter"] == attached.digest() and attached.digest() in record["sam2_weights"]
    model.backbone.use_adapters(None)
    assert model_provenance(model, refine=True)["adapter"] is None


def test_the_channels_last_adapter_computes_the_published_chain(model):
    """LayerNorm → linear → pointwise conv → 3×3 depth-wise conv → GELU → LayerNorm → pointwise conv, + x.

    Written out step by step with channels-first convolutions (the plain reading of the chain), on
    trained-looking (non-zero) weights: the fused channels-last path must give the same values.
    """
    import torch.nn.functional as F

    from napari_rpsam2.model.adapters import DepthwiseAdapter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        adapter = DepthwiseAdapter(32, 4)
        with torch.no_grad():
            for p in adapter.parameters():
                p.add_(0.3 * torch.randn_like(p))
        x = torch.randn(2, 6, 6, 32)
    h = adapter.down(adapter.norm_in(x)).permute(0, 3, 1, 2)
    h = F.gelu(adapter.depthwise(adapter.point_in(h)))
    h = adapter.norm_mid(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    expected = x + adapter.point_out(h).permute(0, 2, 3, 1)
    with torch.no_grad():
        torch.testing.assert_close(adapter(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(adapter.on_sequence(x.reshape(2, 36, 32)), expected.reshape(2, 36, 32),
                                   rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected, x)


def test_composed_maps_kept_for_inference_follow_every_weight_change():
    from napari_rpsam2.model.adapters import DepthwiseAdapter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        adapter = DepthwiseAdapter(16, 4)
        x = torch.randn(1, 4, 4, 16)
    with torch.inference_mode():
        assert torch.equal(adapter(x), x)  # zero at the start, and the maps are now kept
    for name, param in adapter.named_parameters():  # an optimiser step or a loaded file changes them in place
        with torch.no_grad():
            param.add_(0.2)
        with torch.inference_mode():
            kept = adapter(x)
        torch.testing.assert_close(kept, adapter(x), rtol=0, atol=0, msg=name)  # the latter composes afresh
    assert not torch.equal(kept, x)
