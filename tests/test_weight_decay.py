"""AdamW's weight decay reaches only the linear layers' weight matrices."""

import torch

from napari_rpsam2.model import ShiftBlock, ShiftBlockConfig
from napari_rpsam2.training.optimizer import make_optimizer, optimizer_tensors, restore_optimizer
from napari_rpsam2.training.trainer import TrainConfig


def _block() -> ShiftBlock:
    torch.manual_seed(0)
    block = ShiftBlock(ShiftBlockConfig(depth=1, mlp_dim=64))
    with torch.no_grad():  # non-zero biases and LayerNorms, so decay would show on them
        for name, p in block.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.3)
    return block


def _steps(block, optimizer, n=50):
    for _ in range(n):
        for p in block.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()


def test_zero_gradient_moves_only_decayed_linear_weights():
    block = _block()
    before = {k: v.clone() for k, v in block.state_dict().items()}
    _steps(block, make_optimizer(block, TrainConfig(lr=1e-2, weight_decay=0.01)))
    after = block.state_dict()
    linear = {f"{n}.weight" for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)}
    kept = [k for k in after if k not in linear]
    assert {"scale_logit", "point_pos", "image_pos"} <= set(kept)
    assert any("norm" in k for k in kept) and any(k.endswith("bias") for k in kept)
    for k in kept:
        assert torch.equal(after[k], before[k]), k
    assert torch.equal(block.max_shift, torch.sigmoid(before["scale_logit"]))  # still 10 % of an axis
    for k in linear - {"offset_head.weight"}:  # (the offset head starts at zero: nothing to decay)
        assert after[k].norm() < before[k].norm(), k


def test_plain_adamw_would_move_the_scale_logits():
    """The check above can fail: with decay on every parameter the largest shift grows."""
    block = _block()
    start = block.max_shift.clone()
    _steps(block, torch.optim.AdamW(block.parameters(), lr=1e-2, weight_decay=0.01))
    assert (block.max_shift > start).all()


def test_optimizer_state_of_another_layout_is_not_restored():
    block = _block()
    old = torch.optim.AdamW(block.parameters(), lr=1e-2)  # one group: another parameter order
    _steps(block, old, 1)
    extras = optimizer_tensors(old)
    new = make_optimizer(block, TrainConfig())
    assert not restore_optimizer(new, extras) and not new.state
    same = make_optimizer(block, TrainConfig())
    _steps(block, same, 1)
    extras = optimizer_tensors(same)
    again = make_optimizer(block, TrainConfig())
    assert restore_optimizer(again, extras) and len(again.state) == len(list(block.parameters()))
