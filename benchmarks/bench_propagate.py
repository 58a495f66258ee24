"""Propagation speed against SAM2's own video predictor, and memory against the number of frames.

Prints one JSON line (the last line of stdout).

* ``per_frame_to_sam2_ratio``: seconds per frame of ``RPSAM2.propagate`` over
  those of ``SAM2VideoPredictor`` (``init_state`` on a JPEG folder,
  ``add_new_points_or_box``, ``propagate_in_video``) on the same frames, one
  object from one click, forward; the image encoder included on both sides
  (our embedding cache starts empty); runs interleaved.  Goal <= 1.0.
* ``per_frame_cached_to_sam2_ratio``: the same with our embeddings already cached.
* ``memory_growth_200_over_50``: peak resident memory added by a propagation
  through 200 frames over that of 50 frames (each in a fresh process).  Goal <= 1.2.
  With ``--memory-encoder stub`` (default) every frame gets one precomputed
  embedding (the tracking is real, the encoder is skipped: 250 real encodes
  take long on a CPU); ``--memory-encoder real`` encodes every frame.

Absolute times only mean something on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", category=UserWarning)  # SAM2's CUDA hole filling is absent on a CPU


def _frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    """A bright disc drifting over a textured background, (n, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size, 3), np.uint8)
    for t in range(n):
        base = 60 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 6, (size, size))
        cx = size * (0.3 + 0.4 * (t % 20) / 20)
        disc = (yy - size / 2) ** 2 + (xx - cx) ** 2 < (size / 6) ** 2
        img = np.where(disc, 210, base)
        out[t] = np.clip(np.stack([img, img * 0.8, img * 0.6], -1), 0, 255).astype(np.uint8)
    return out


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _ours(model, frames, click, cached: bool) -> float:
    from napari_rpsam2.model import EmbeddingCache, FramePrompt

    if not cached:
        model.cache = EmbeddingCache(model.cache.max_bytes)
    _sync()
    start = time.perf_counter()
    model.propagate(frames, [FramePrompt(0, 1, points=[click])], direction="forward", refine=False)
    _sync()
    return time.perf_counter() - start


def _sam2(predictor, folder: str, click, size: int) -> float:
    _sync()
    start = time.perf_counter()
    with torch.inference_mode():
        state = predictor.init_state(folder)
        predictor.add_new_points_or_box(state, 0, 1, points=[[click[1], click[0]]], labels=[1])
        for _ in predictor.propagate_in_video(state):
            pass
    _sync()
    return time.perf_counter() - start


def _speed(args) -> dict:
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    from napari_rpsam2 import RPSAM2

    model = RPSAM2.load(args.backbone, "random", device=args.device, seed=0)
    predictor = build_sam2_video_predictor(model.backbone.spec.config, None, device=str(model.device))
    predictor.load_state_dict(model.backbone.model.state_dict())
    frames = _frames(args.frames, args.size)
    click = (args.size // 2, int(args.size * 0.3))
    times = {"ours": [], "ours_cached": [], "sam2": []}
    with tempfile.TemporaryDirectory() as folder:
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(Path(folder) / f"{t:05d}.jpg", quality=95)
        for _ in range(args.repeats):  # interleaved so machine noise hits both sides
            times["ours"].append(_ours(model, frames, click, cached=False))
            times["sam2"].append(_sam2(predictor, folder, click, args.size))
            times["ours_cached"].append(_ours(model, frames, click, cached=True))
    per_frame = {k: float(np.median(v)) / args.frames for k, v in times.items()}
    return {
        "per_frame_to_sam2_ratio": per_frame["ours"] / per_frame["sam2"],
        "per_frame_cached_to_sam2_ratio": per_frame["ours_cached"] / per_frame["sam2"],
        "seconds_per_frame": per_frame,
        "speed_frames": args.frames, "speed_frame_size": [args.size, args.size], "repeats": args.repeats,
    }


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def _memory_child(args) -> None:
    """In a fresh process: peak RSS added by one propagation through ``args.child`` frames."""
    from napari_rpsam2 import RPSAM2
    from napari_rpsam2.model import FramePrompt

    model = RPSAM2.load(args.backbone, "random", device=args.device, seed=0)
    frames = _frames(args.child, args.memory_size)
    if args.memory_encoder == "stub":
        emb = model.embed(frames[0])
        model.embed = lambda *a, **k: emb  # tracking is real; every frame reuses one embedding
    click = (args.memory_size // 2, int(args.memory_size * 0.3))
    # warm-up on two frames so one-off allocations do not count as growth
    model.propagate(frames[:2], [FramePrompt(0, 1, points=[click])], direction="forward", refine=False)
    before = _rss_kib()
    model.propagate(frames, [FramePrompt(0, 1, points=[click])], direction="forward", refine=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"frames": args.child, "growth_kib": max(peak - before, 1), "peak_kib": peak}))


def _memory(args) -> dict:
    growth = {}
    for n in (50, 200):
        cmd = [sys.executable, __file__, "--child", str(n), "--memory-size", str(args.memory_size),
               "--memory-encoder", args.memory_encoder, "--backbone", args.backbone, "--device", args.device]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        growth[n] = json.loads(out)["growth_kib"]
    return {"memory_growth_200_over_50": growth[200] / growth[50], "memory_growth_kib": growth,
            "memory_frame_size": [args.memory_size, args.memory_size], "encoder": args.memory_encoder,
            "memory_note": "peak RSS added by one propagation (fresh process each; labels output included)"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="sam2.1_hiera_tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=6, help="frames of the speed comparison")
    parser.add_argument("--size", type=int, default=128, help="frame side of the speed comparison")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-size", type=int, default=64, help="frame side of the memory runs")
    parser.add_argument("--memory-encoder", choices=("stub", "real"), default="stub")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.child is not None:
        _memory_child(args)
        return {}
    out = {"benchmark": "propagate", "backbone": args.backbone, "device": args.device,
           "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    out.update(_speed(args))
    if not args.skip_memory:
        out.update(_memory(args))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
