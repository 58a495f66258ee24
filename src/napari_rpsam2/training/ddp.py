"""Process-group helpers for multi-process training (``torchrun``; gloo on CPU, nccl on CUDA).

The shift block is wrapped in ``torch.nn.parallel.DistributedDataParallel``
(:func:`wrap`); a batch's images are accumulated under ``no_sync()`` and the
last one's backward pass averages the gradients (:func:`sync_unless_last`).
Each epoch's shards come from a seeded ``DistributedSampler`` with
``set_epoch`` (:func:`epoch_shard`), without its padding: a padded sample
would count twice.  A rank whose batch is empty still joins the all-reduce
with a zero gradient (:func:`idle_step`).  Errors found on any rank before
the long work reach every rank (:func:`agree`), so no process waits forever
at a collective; an error later ends that process, and ``torchrun`` then stops
the others.

``torchrun -m napari_rpsam2.cli train …`` is the entry point (the same ``rpsam2 train``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "rank_and_world", "all_reduce_mean", "all_reduce_sum", "any_rank", "agree",
           "barrier", "shard", "epoch_shard", "broadcast_object", "wrap", "sync_unless_last", "init_from_env",
           "leave_group", "RankFailed"]


class RankFailed(RuntimeError):
    """Another process of the job failed; the message is that process's."""



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


def epoch_shard(n: int, rank: int, world: int, seed: int, epoch: int) -> list[int]:
    """This rank's sample indices for ``epoch``: a seeded ``DistributedSampler`` reshuffled by ``set_epoch``.

    The sampler pads every shard to ``ceil(n / world)`` by repeating samples;
    the repeats are dropped here, so each sample counts once per epoch (the
    last batch of some ranks is then smaller or empty).
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    own = len(range(rank, n, world))  # positions rank, rank + world, … below n are real samples
    return [int(i) for i in list(sampler)[:own]]


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` inside a process group, else ``module`` itself."""
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def sync_unless_last(module: torch.nn.Module, last: bool):
    """``module.no_sync()`` for every image of a batch but the last (a no-op context outside DDP)."""
    import contextlib

    if last or not hasattr(module, "no_sync"):
        return contextlib.nullcontext()
    return module.no_sync()


def all_reduce_sum(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Sum of each value across processes (identity outside a group)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64,
                     device=_device_for_collectives(torch.device(device)))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def agree(error: BaseException | None) -> None:
    """Every rank calls this after a check: if any rank failed, all of them raise.

    The failing rank re-raises its own error; the others raise
    :class:`RankFailed` with that rank's message, so no rank goes on to a
    collective the failed one will never join.
    """
    if not is_distributed():
        if error is not None:
            raise error
        return
    messages: list = [None] * dist.get_world_size()
    dist.all_gather_object(messages, None if error is None else " ".join(str(error).split()))
    if error is not None:
        raise error
    for rank, message in enumerate(messages):
        if message is not None:
            raise RankFailed(f"process {rank} of {len(messages)} failed: {message}")


def broadcast_object(value, src: int = 0):
    """``value`` of rank ``src`` on every rank (identity outside a group)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


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
