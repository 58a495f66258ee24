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
  ``--memory-image-size`` builds SAM2 at a smaller square input for these runs
  (default: the config's 1024): on a CPU every frame costs seconds of memory
  attention at 1024, and what is kept per frame does not depend on that size.
* ``sam2_memory_growth_200_over_50`` (with ``--memory-sam2``): the same for
  ``SAM2VideoPredictor`` (``init_state`` on a JPEG folder, real encoder), for contrast.

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


def _model(args, image_size: int | None):
    """RP-SAM2 with random seeded weights, SAM2 built at ``image_size`` (None: the config's)."""
    from sam2.build_sam import build_sam2

    from napari_rpsam2 import RPSAM2
    from napari_rpsam2.model.backbone import SAM2Backbone
    from napari_rpsam2.model.weights import resolve_backbone

    if image_size is None:
        return RPSAM2.load(args.backbone, "random", device=args.device, seed=0)
    spec = resolve_backbone(args.backbone)
    torch.manual_seed(0)
    sam = build_sam2(spec.config, None, device=args.device, mode="eval",
                     hydra_overrides_extra=[f"++model.image_size={image_size}"])
    return RPSAM2(SAM2Backbone(sam, spec, f"{spec.name}|random:0@{image_size}"))


def _sam2_memory_child(args) -> None:
    """In a fresh process: peak RSS added by SAM2's own predictor through ``args.child`` frames."""
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    from napari_rpsam2.model.weights import resolve_backbone

    size = args.memory_image_size
    extra = [] if size is None else [f"++model.image_size={size}"]
    predictor = build_sam2_video_predictor(resolve_backbone(args.backbone).config, None, device=args.device,
                                           hydra_overrides_extra=extra)
    click = (args.memory_size // 2, int(args.memory_size * 0.3))
    with tempfile.TemporaryDirectory() as warm, tempfile.TemporaryDirectory() as folder:
        for t, frame in enumerate(_frames(args.child, args.memory_size)):
            for target in (folder, warm) if t < 2 else (folder,):
                Image.fromarray(frame).save(Path(target) / f"{t:05d}.jpg", quality=95)
        _sam2(predictor, warm, click, args.memory_size)  # one-off allocations do not count as growth
        before = _rss_kib()
        _sam2(predictor, folder, click, args.memory_size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": args.child, "growth_kib": max(peak - before, 1), "peak_kib": peak}))


def _memory_child(args) -> None:
    """In a fresh process: peak RSS added by one propagation through ``args.child`` frames."""
    from napari_rpsam2.model import FramePrompt

    if args.child_sam2:
        _sam2_memory_child(args)
        return
    model = _model(args, args.memory_image_size)
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


def _growth(args, sam2: bool) -> dict[int, int]:
    """``frames -> peak RSS added (KiB)`` for 50 and 200 frames, each in a fresh process."""
    growth = {}
    for n in (50, 200):
        cmd = [sys.executable, __file__, "--child", str(n), "--memory-size", str(args.memory_size),
               "--memory-encoder", args.memory_encoder, "--backbone", args.backbone, "--device", args.device]
        if args.memory_image_size is not None:
            cmd += ["--memory-image-size", str(args.memory_image_size)]
        if sam2:
            cmd.append("--child-sam2")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        growth[n] = json.loads(out)["growth_kib"]
    return growth


def _memory(args) -> dict:
    growth = _growth(args, sam2=False)
    out = {"memory_growth_200_over_50": growth[200] / growth[50], "memory_growth_kib": growth,
           "memory_frame_size": [args.memory_size, args.memory_size], "encoder": args.memory_encoder,
           "memory_sam2_input_size": args.memory_image_size or 1024,
           "memory_note": "peak RSS added by one propagation (fresh process each; labels output included)"}
    if args.memory_sam2:
        theirs = _growth(args, sam2=True)
        out.update({"sam2_memory_growth_200_over_50": theirs[200] / theirs[50], "sam2_memory_growth_kib": theirs})
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="sam2.1_hiera_tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=6, help="frames of the speed comparison")
    parser.add_argument("--size", type=int, default=128, help="frame side of the speed comparison")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-size", type=int, default=64, help="frame side of the memory runs")
    parser.add_argument("--memory-encoder", choices=("stub", "real"), default="stub")
    parser.add_argument("--memory-image-size", type=int, default=None,
                        help="SAM2's square input side for the memory runs (default: the config's, 1024)")
    parser.add_argument("--memory-sam2", action="store_true", help="also measure SAM2's own predictor")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-sam2", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.child is not None:
        _memory_child(args)
        return {}
    out = {"benchmark": "propagate", "backbone": args.backbone, "device": args.device,
           "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    if not args.skip_speed:
        out.update(_speed(args))
    if not args.skip_memory:
        out.update(_memory(args))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
