"""The shift block's optimizer, and its state in checkpoints.

AdamW with weight decay on the weight matrices of linear layers only (see
:func:`make_optimizer`).  Its state travels in a checkpoint as flat tensors
``optim.<parameter index>.<name>`` (:func:`optimizer_tensors`) and is
restored only when it fits the optimizer's parameters (:func:`restore_optimizer`).
"""

from __future__ import annotations

import torch

__all__ = ["make_optimizer", "optimizer_tensors", "restore_optimizer"]


def make_optimizer(block: torch.nn.Module, config) -> torch.optim.AdamW:
    """AdamW where only the weight matrices of linear layers decay.

    ``config`` gives ``lr`` and ``weight_decay`` (a ``TrainConfig``).

    The scale logits (whose sigmoid bounds the shift), the positional
    embeddings, the LayerNorms and all biases get no weight decay: decaying
    the scale logits towards 0 would raise the largest shift from 10 % of an
    axis towards 50 % with no gradient asking for it.
    """
    decayed = {id(m.weight) for m in block.modules() if isinstance(m, torch.nn.Linear)}
    trainable = [p for p in block.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) in decayed], "weight_decay": config.weight_decay},
              {"params": [p for p in trainable if id(p) not in decayed], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's state as flat tensors ``optim.<index>.<name>`` (for a checkpoint)."""
    out = {}
    for idx, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                out[f"optim.{idx}.{name}"] = value.reshape(-1) if value.dim() == 0 else value
    return out


def restore_optimizer(optimizer: torch.optim.Optimizer, extras: dict[str, torch.Tensor]) -> bool:
    """Load state saved by :func:`optimizer_tensors`; ``False`` (state left fresh) when none fits."""
    state: dict[int, dict] = {}
    for key, value in extras.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value.reshape(()) if name == "step" else value
    if not state:
        return False
    current = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    fits = all(i < len(params) and all(v.shape == params[i].shape for n, v in s.items() if n != "step")
               for i, s in state.items())
    if not fits:  # saved with another parameter order (e.g. before the decay groups): start afresh
        return False
    device = params[0].device
    state = {i: {n: (v if n == "step" else v.to(device)) for n, v in s.items()} for i, s in state.items()}
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
    return True
