"""Click latency: plain SAM2 vs RP-SAM2 on a cached slice, plus encoder time.

Prints one JSON line (the last line of stdout).  Ratios are measured in one
run, plain and refined clicks interleaved (A B B A …) so machine noise hits
both; absolute times only mean something on a GPU.

Goal: ``refined_to_plain_ratio <= 1.25`` (CPU, hiera-tiny) and a second
click on a cached slice never runs the encoder (``encoder_calls_after_first``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.sample_data import make_instrument_stack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, median_ratio, timed_once  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="sam2.1_hiera_tiny")
    parser.add_argument("--sam2-weights", default="random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--slices", type=int, default=2, help="slices encoded to time the encoder")
    args = parser.parse_args(argv)

    model = RPSAM2.load(args.backbone, args.sam2_weights, device=args.device, seed=0)
    # A trained-looking block (non-zero offset head) so refinement does real work.
    with torch.no_grad():
        torch.manual_seed(1)
        model.shift_block.offset_head.weight.normal_(0, 0.05)
    image, labels = make_instrument_stack(n_slices=args.slices, shape=(768, 1024))

    calls = {"encode": 0}
    encode = model.backbone.encode

    def counting_encode(rgb):
        calls["encode"] += 1
        return encode(rgb)

    model.backbone.encode = counting_encode
    encoder_per_slice = timed_once(lambda: [model.embed(image[i]) for i in range(args.slices)]) / args.slices

    rows, cols = np.nonzero(labels[0] == 1)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(rows), args.repeats)
    clicks = [[[float(rows[i]), float(cols[i])]] for i in picks]
    frame = image[0]

    model.segment(frame, clicks[0], refine=True)  # warm-up (builds the shift-block context)
    model.segment(frame, clicks[0], refine=False)
    before = calls["encode"]
    plain_clicks, refined_clicks = iter(clicks), iter(clicks)  # both sides get the same clicks
    plain, refined = interleaved(lambda: model.segment(frame, next(plain_clicks), refine=False),
                                 lambda: model.segment(frame, next(refined_clicks), refine=True), args.repeats)
    encoder_calls_after_first = calls["encode"] - before

    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "benchmark": "click",
        "device": str(model.device),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "backbone": args.backbone,
        "image_hw": list(frame.shape[:2]),
        "encoder_s_per_slice": round(encoder_per_slice, 4),
        "plain_click_s": round(statistics.median(plain), 5),
        "refined_click_s": round(statistics.median(refined), 5),
        "refined_to_plain_ratio": round(median_ratio(refined, plain), 3),
        "timing": "interleaved A B B A, median of pairwise ratios",
        "goal_refined_to_plain_ratio": 1.25,
        "encoder_calls_after_first": encoder_calls_after_first,
        "peak_rss_mib": round(peak_rss_mib, 1),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
        "repeats": args.repeats,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
