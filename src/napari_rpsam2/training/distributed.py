"""Multi-process training with ``torchrun`` (PyTorch DDP semantics).

The shift block runs once per image with that image's keys/values, so
instead of wrapping it in ``DistributedDataParallel`` the trainer averages
gradients itself after each backward pass (``all_reduce`` then divide by
the world size) — the same update DDP makes.  Data are sharded by rank and
only rank 0 writes checkpoints and logs.

Run::

    torchrun --nproc_per_node 2 -m napari_rpsam2.training.distributed \\
        --images DIR --labels DIR --out shift.safetensors --epochs 10

(gloo on CPU, nccl on CUDA, one GPU per process).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "rank_and_world", "average_gradients", "all_reduce_mean", "any_rank",
           "barrier", "shard", "init_from_env", "main"]


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m napari_rpsam2.training.distributed",
                                description="Train the RP-SAM2 shift block (run under torchrun).")
    p.add_argument("--images", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--val-images")
    p.add_argument("--val-labels")
    p.add_argument("--out", required=True)
    p.add_argument("--backbone", default="sam2.1_hiera_tiny")
    p.add_argument("--sam2-weights", default="random")
    p.add_argument("--epochs", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--clicks", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--grid-stride", type=int)
    p.add_argument("--eval-clicks", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume")
    p.add_argument("--log")
    p.add_argument("--device", default="auto")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse arguments, join the group, train, leave the group."""
    from ..model import RPSAM2
    from .data import DataError, stack_from_folders
    from .trainer import TrainConfig, train_shift_block

    args = _parser().parse_args(argv)
    rank, world, device = init_from_env(args.device)
    try:
        train = stack_from_folders(args.images, args.labels)
        val = stack_from_folders(args.val_images, args.val_labels) if args.val_images else None
        model = RPSAM2.load(args.backbone, args.sam2_weights, device=device, seed=args.seed)
        config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                             clicks_per_object=args.clicks, seed=args.seed, grid_stride=args.grid_stride,
                             eval_clicks=args.eval_clicks)
        result = train_shift_block(model, train, args.out, config, val=val, resume=args.resume,
                                   log_path=args.log)
        if rank == 0:
            print(f"rank 0 of {world}: best epoch {result.best_epoch}, checkpoint {result.checkpoint}")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
