"""The shift block as docs/method.md describes it."""

import math

import pytest
import torch

from napari_rpsam2.model.shift_block import ShiftBlock, ShiftBlockConfig


@pytest.fixture(scope="module")
def context_and_tokens(frame0, model):
    _, _, emb = frame0
    block = ShiftBlock()
    ctx = block.image_context(emb.image_embed)
    xy = torch.rand(16, 2, generator=torch.Generator().manual_seed(0))
    tokens = model.backbone.point_tokens(xy)
    return block, ctx, xy, tokens


def test_fresh_block_is_the_identity(context_and_tokens):
    block, ctx, xy, tokens = context_and_tokens
    out = block(xy, tokens, ctx)
    assert torch.equal(out, xy)


def test_scale_tokens_start_at_ten_percent():
    block = ShiftBlock()
    torch.testing.assert_close(block.max_shift, torch.tensor([0.1, 0.1]))


def test_shift_never_exceeds_the_learned_scale(context_and_tokens):
    block, _, xy, tokens = context_and_tokens
    moved_block = ShiftBlock()
    with torch.no_grad():
        moved_block.offset_head.weight.normal_(0, 5.0)
        moved_block.scale_logit.copy_(torch.tensor([math.log(0.2 / 0.8), math.log(0.05 / 0.95)]))
    ctx = moved_block.image_context(torch.randn(256, 64, 64))
    out = moved_block(xy, tokens, ctx)
    shift = (out - xy).abs()
    assert shift.max() > 0.01, "a non-zero head should move the clicks"
    assert torch.all(shift[:, 0] <= 0.2 + 1e-6) and torch.all(shift[:, 1] <= 0.05 + 1e-6)


def test_parameter_count_is_reported_by_the_summary(model):
    block = model.shift_block
    counted = sum(p.numel() for p in block.parameters())
    assert block.parameter_count() == counted
    assert f"{counted:,} trainable parameters" in model.summary()
    c = block.config
    per_block = 4 * (c.dim * c.dim + c.dim) + 2 * 2 * c.dim + (c.dim * c.mlp_dim + c.mlp_dim) + (c.mlp_dim * c.dim + c.dim)
    expected = c.depth * per_block + c.image_tokens * c.dim + c.dim + (2 * c.dim + 2) + 2
    assert counted == expected


def test_config_round_trip_and_unknown_keys():
    cfg = ShiftBlockConfig(depth=2)
    assert ShiftBlockConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown shift-block settings"):
        ShiftBlockConfig.from_dict({**cfg.to_dict(), "colour": "red"})


def test_a_smaller_sam2_input_resamples_the_positions_and_odd_grids_are_refused():
    block = ShiftBlock()
    with torch.no_grad():  # one position vector everywhere: resampling must keep it
        block.image_pos.copy_(torch.linspace(-1, 1, 256).expand(64 * 64, 256))
    small = torch.randn(256, 16, 16)  # SAM2 built at a 256² input has a 16×16 grid
    keys, values = block.image_context(small)[0]
    expected_keys, expected_values = block.blocks[0].keys_values(small.flatten(1).T + block.image_pos[:256])
    torch.testing.assert_close(keys, expected_keys)
    torch.testing.assert_close(values, expected_values)
    with pytest.raises(ValueError, match="tokens"):
        block.image_context(torch.randn(256, 16, 24))  # not square
    with pytest.raises(ValueError, match="tokens"):
        block.image_context(torch.randn(128, 16, 16))  # not the block's width
