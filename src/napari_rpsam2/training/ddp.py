"""Process-group helpers for multi-process training (PyTorch DDP semantics).

The shift block runs once per image with that image's keys/values, so
instead of wrapping it in ``DistributedDataParallel`` the trainer averages
gradients itself after each backward pass (``all_reduce`` then divide by
the world size) — the same update DDP makes.  Data are sharded by rank and
only rank 0 writes checkpoints and logs.

gloo on CPU, nccl on CUDA (one GPU per process); see
``torchrun -m napari_rpsam2.cli train …`` is the entry point (the same ``rpsam2 train``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "rank_and_world", "average_gradients", "all_reduce_mean", "any_rank",
           "barrier", "shard", "init_from_env", "leave_group"]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(items: Sequence, rank: int, world: int) -> list:
    """The items of one rank: every ``world``-th item starting at ``rank``."""
    return list(items[rank::world])


def _device_for_collectives(tensor_device: torch.device) -> torch.device:
    return tensor_device if dist.get_backend() == "nccl" else torch.device("cpu")


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over all processes (missing grads count as zero)."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    world = dist.get_world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dev = _device_for_collectives(flat.device)
    buf = flat.to(dev)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    buf = (buf / world).to(flat.device)
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(buf[offset:offset + n].view_as(p.grad))
        offset += n


def all_reduce_mean(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Mean of each value across processes (identity outside a group)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64,
                     device=_device_for_collectives(torch.device(device)))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / dist.get_world_size()).tolist()


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True when ``flag`` is true on any process."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_device_for_collectives(torch.device(device)))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    """Wait for all processes (no-op outside a group)."""
    if is_distributed():
        dist.barrier()


def init_from_env(device: str = "auto") -> tuple[int, int, str]:
    """Join the group ``torchrun`` set up; returns ``(rank, world, device)``.

    nccl with one GPU per local rank when CUDA is available (and not
    ``device="cpu"``), gloo on CPU.
    """
    use_cuda = torch.cuda.is_available() and device != "cpu"
    backend = "nccl" if use_cuda else "gloo"
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group(backend=backend)
    rank, world = rank_and_world()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, world, f"cuda:{local}"
    return rank, world, "cpu" if device == "auto" else device


def leave_group() -> None:
    """Destroy the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
