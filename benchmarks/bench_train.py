"""Training speed: cached embeddings + candidates vs recomputing them every step.

Prints one JSON line last: ``speedup_vs_on_the_fly`` (epoch time on the fly /
epoch time cached; goal ≥ 10) and ``step_to_limit_ratio`` (cached step time /
decoder forward+backward alone for the same clicks; goal ≤ 1.5).
Sample stack, random SAM2 weights (``--backbone``, default tiny; the paper
uses ``sam2.1_hiera_large``), CPU unless CUDA is present.

The speed-up is ``1 + (encoder + candidate decoding) / step``: with the
default 12×12 candidate grid and 10 clicks per object, the candidate term is
bounded for any backbone (the mask decoder is the same size in every SAM2),
while the encoder term grows with the backbone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.model.coords import pixels_to_normalized
from napari_rpsam2.sample_data import CLASS_NAMES, make_instrument_stack
from napari_rpsam2.training.candidates import CandidateCache
from napari_rpsam2.training.data import stack_from_arrays
from napari_rpsam2.training.trainer import TrainConfig, prepare_slices, training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="sam2.1_hiera_tiny")
    parser.add_argument("--sam2-weights", default="random")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    model = RPSAM2.load(args.backbone, args.sam2_weights, device=args.device, seed=0)
    image, labels = make_instrument_stack(n_slices=2)
    stack = stack_from_arrays(image, labels, class_names=CLASS_NAMES)
    config = TrainConfig(batch_size=2, clicks_per_object=10, grid_stride=None)  # paper: 10 clicks
    rng = np.random.default_rng(0)

    t0 = time.perf_counter()
    slices = prepare_slices(model, stack, config)  # once: embeddings + candidates
    prep = time.perf_counter() - t0
    model.shift_block.train()
    training_step(model, slices, config, rng)  # warm-up
    k = config.clicks_per_object

    def one_step() -> None:
        model.shift_block.zero_grad(set_to_none=True)
        training_step(model, slices, config, rng)

    def decoder_limit() -> None:  # decoder forward + backward for the same clicks, nothing else
        for item in slices:
            rows = np.concatenate([o.inside[rng.integers(len(o.inside), size=k)] for o in item.objects])
            xy = torch.as_tensor(pixels_to_normalized(rows, item.embedding.image_hw), dtype=torch.float32,
                                 device=model.device).requires_grad_(True)
            chunk = model.backbone.click_chunk_size  # the decoder's fastest batch on this device
            for s in range(0, len(xy), chunk):
                ones = torch.ones((len(xy[s:s + chunk]), 1), dtype=torch.int, device=model.device)
                logits, _ = model.backbone.decode(item.embedding, xy[s:s + chunk].unsqueeze(1), ones, True)
                logits.sigmoid().mean().backward()

    steps, limits = interleaved(one_step, decoder_limit, repeats=4)  # A B B A: noise hits both sides
    step, limit = statistics.median(steps), statistics.median(limits)

    # on the fly: every step re-encodes its images and recomputes candidates (one step per epoch here)
    model.cache.clear()
    t0 = time.perf_counter()
    fly_slices = prepare_slices(model, stack, config, candidate_cache=CandidateCache())
    training_step(model, fly_slices, config, rng)
    on_the_fly = time.perf_counter() - t0
    result = {
        "device": str(model.device), "backbone": args.backbone, "slices": len(slices), "objects": sum(len(s.objects) for s in slices),
        "clicks_per_object": k, "prepare_once_s": round(prep, 3), "epoch_cached_s": round(step, 3),
        "epoch_on_the_fly_s": round(on_the_fly, 3), "decoder_limit_s": round(limit, 3),
        "speedup_vs_on_the_fly": round(on_the_fly / step, 2), "step_to_limit_ratio": round(step / limit, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
