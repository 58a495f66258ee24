"""``rpsam2 info`` and ``rpsam2 embed``: the model, and its disk cache of image embeddings."""

from __future__ import annotations

import argparse
import numpy as np

from .support import IMAGES_HELP, ProgressBars, cache_folder, make_model, model_options, open_input, window_option


def cmd_info(args: argparse.Namespace, base=None) -> int:
    model = make_model(args, base)
    print(model.summary())
    return 0


def cmd_embed(args: argparse.Namespace, base=None) -> int:
    cache_dir = cache_folder(args.cache)
    source = open_input(args.images, args.window)
    model = make_model(args, base, cache_dir=cache_dir)
    bars, before = ProgressBars(args.quiet, "embeddings"), model.cache.stats.disk_writes
    read = getattr(source.data, "read", source.data.__getitem__)  # a folder's frames may differ in size
    slices = 0
    try:
        for i in range(len(source)):
            arr = np.asarray(read(i))
            slices += model.precompute(arr, rgb=arr.ndim == 3, contrast_limits=source.contrast_limits)
            bars(i + 1, len(source))
    finally:
        bars.close()
    computed = model.cache.stats.disk_writes - before
    print(f"{slices} slices from {source.path.name} ({source.kind}): {computed} computed, {slices - computed} "
          f"found in {cache_dir}")
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
    sp.add_argument("--images", required=True, help=IMAGES_HELP)
    window_option(sp)
    sp.add_argument("--cache", required=True, help="cache folder (created if missing)")
    sp.set_defaults(func=cmd_embed)
