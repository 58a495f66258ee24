"""``torchrun`` entry point: the ``rpsam2 train`` command in every process.

Run::

    torchrun --nproc_per_node 2 -m napari_rpsam2.training.distributed \\
        --images DIR --labels DIR --out shift.safetensors --epochs 10

The options are those of ``rpsam2 train``.  Each process joins the group
``torchrun`` set up (gloo on CPU, nccl on CUDA with one GPU per process),
trains on its shard of the images, gradients are averaged after every
backward pass, and only rank 0 writes checkpoints and logs
(:mod:`napari_rpsam2.training.ddp`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rpsam2 train`` with these arguments (default: the command line)."""
    from ..cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
