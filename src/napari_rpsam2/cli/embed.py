"""``rpsam2 info`` and ``rpsam2 embed``: the model, and its disk cache of image embeddings."""

from __future__ import annotations

import argparse
from .support import ProgressBars, cache_folder, existing_folder, make_model, model_options


def cmd_info(args: argparse.Namespace, base=None) -> int:
    model = make_model(args, base)
    print(model.summary())
    return 0


def cmd_embed(args: argparse.Namespace, base=None) -> int:
    cache_dir = cache_folder(args.cache)
    from ..training.data import list_image_files, read_image_file

    files = list_image_files(existing_folder(args.images, "images"))
    model = make_model(args, base, cache_dir=cache_dir)
    bars, before = ProgressBars(args.quiet, "embeddings"), model.cache.stats.disk_writes
    slices = 0
    try:
        for i, f in enumerate(files):
            arr = read_image_file(f)
            slices += model.precompute(arr, rgb=arr.ndim == 3)
            bars(i + 1, len(files))
    finally:
        bars.close()
    computed = model.cache.stats.disk_writes - before
    print(f"{slices} slices from {len(files)} files: {computed} computed, {slices - computed} found in {cache_dir}")
    return 0


def add_info(sub) -> None:
    """``rpsam2 info``."""
    sp = sub.add_parser("info", help="print the model summary")
    model_options(sp)
    sp.add_argument("--shift-block", default=None, help="shift-block checkpoint (.safetensors)")
    sp.set_defaults(func=cmd_info)


def add_embed(sub) -> None:
    """``rpsam2 embed``."""
    sp = sub.add_parser("embed", help="precompute image embeddings into a disk cache")
    model_options(sp)
    sp.add_argument("--images", required=True, help="folder of images")
    sp.add_argument("--cache", required=True, help="cache folder (created if missing)")
    sp.set_defaults(func=cmd_embed)
