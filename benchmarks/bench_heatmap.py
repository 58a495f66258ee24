"""Grid-sensitivity heatmap speed: our grid_dice path vs a SAM2 predictor loop vs the decoder alone.

A 32×32 grid (stride 20 px over a 640×640 square object) on a 1024×768
image.  Three timings per grid point, all from the same cached embedding:

- ``ours``: :func:`napari_rpsam2.evaluation.sensitivity.heatmap` (the trainer's
  ``grid_dice``: chunked decoding, upsampling to the image, Dice per click);
- ``limit``: ``backbone.decode`` for the same points in the same chunks, no
  upsampling and no Dice (what the heatmap cannot beat);
- ``predictor_loop``: ``SAM2ImagePredictor.predict`` once per point
  (``set_image`` once, not timed), plus a numpy Dice of its mask, on an evenly
  spaced subset of the points to bound the runtime.

Peak memory growth is measured during ``ours`` (CUDA: peak allocated; CPU:
peak resident set size sampled every 2 ms).  Prints one JSON line (last line
of stdout).  Goals: ``per_point_to_limit_ratio <= 1.1``,
``per_point_to_predictor_loop_ratio < 1``, ``peak_memory_growth_mib < 1536``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time

import numpy as np
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.evaluation.sensitivity import heatmap
from napari_rpsam2.model.coords import pixels_to_normalized
from napari_rpsam2.sample_data import make_instrument_stack
from napari_rpsam2.training.candidates import grid_points

H, W, GRID, STRIDE = 768, 1024, 32, 20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRSS:
    """Samples the resident set size in a thread; ``growth`` is peak minus the start."""

    def __enter__(self) -> "_PeakRSS":
        self.start = self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())

    @property
    def growth(self) -> float:
        return self.peak - self.start


def _say(text: str) -> None:
    print(f"[bench_heatmap {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def square_mask() -> np.ndarray:
    """A 640×640 square whose stride-20 grid is exactly 32×32 points."""
    mask = np.zeros((H, W), bool)
    top, left = (H - GRID * STRIDE) // 2, (W - GRID * STRIDE) // 2
    mask[top:top + GRID * STRIDE, left:left + GRID * STRIDE] = True
    return mask


def time_limit(model: RPSAM2, emb, points: np.ndarray) -> float:
    """Seconds for backbone.decode over all points in the same chunks, nothing else."""
    dev = model.device
    chunk = model.backbone.click_chunk_size
    _sync(dev)
    start = time.perf_counter()
    with torch.inference_mode():
        xy = torch.as_tensor(pixels_to_normalized(points, emb.image_hw), dtype=torch.float64, device=dev)
        for s in range(0, len(xy), chunk):
            pts = xy[s:s + chunk].unsqueeze(1)
            ones = torch.ones(pts.shape[:2], dtype=torch.int, device=dev)
            model.backbone.decode(emb, pts, ones, True)
    _sync(dev)
    return time.perf_counter() - start


def time_predictor(model: RPSAM2, image: np.ndarray, mask: np.ndarray, points: np.ndarray) -> float:
    """Seconds for one SAM2ImagePredictor.predict (+ numpy Dice) per point."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model.backbone.model)
    with torch.inference_mode():
        predictor.set_image(image)
    _sync(model.device)
    start = time.perf_counter()
    for r, c in points:
        masks, scores, _ = predictor.predict(point_coords=np.array([[c + 0.5, r + 0.5]]),
                                             point_labels=np.array([1]), multimask_output=True)
        best = masks[int(np.argmax(scores))] > 0
        _ = 2 * np.logical_and(best, mask).sum() / (best.sum() + mask.sum())
    _sync(model.device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="sam2.1_hiera_tiny")
    parser.add_argument("--sam2-weights", default="random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--predictor-points", type=int, default=64, help="points timed in the predictor loop")
    parser.add_argument("--repeats", type=int, default=2, help="best of N for ours and the limit")
    args = parser.parse_args(argv)

    model = RPSAM2.load(args.backbone, args.sam2_weights, device=args.device, seed=0)
    image = make_instrument_stack(n_slices=1, shape=(H, W))[0][0]
    mask = square_mask()
    points = grid_points(mask, STRIDE)
    assert len(points) == GRID * GRID, len(points)
    emb = model.embed(image, rgb=True)
    _say("embedded; warm-up")
    heatmap(model, image, mask, stride=STRIDE, rgb=True)  # warm-up (allocator, kernels)
    time_limit(model, emb, points[:32])

    ours, limit = [], []
    growth = 0.0
    for _ in range(args.repeats):
        if model.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with _PeakRSS() as rss:
            _sync(model.device)
            t0 = time.perf_counter()
            smap = heatmap(model, image, mask, stride=STRIDE, rgb=True)
            _sync(model.device)
            ours.append(time.perf_counter() - t0)
        _say(f"ours: {ours[-1]:.1f}s")
        growth = max(growth, (torch.cuda.max_memory_allocated() - base) / 2**20
                     if model.device.type == "cuda" else rss.growth)
        limit.append(time_limit(model, emb, points))
        _say(f"limit: {limit[-1]:.1f}s")
    n_pred = min(args.predictor_points, len(points))
    subset = points[np.linspace(0, len(points) - 1, n_pred).round().astype(int)]
    pred_time = time_predictor(model, image, mask, subset)
    _say(f"predictor loop: {pred_time:.1f}s for {n_pred} points")

    per_point = min(ours) / len(points)
    per_limit = min(limit) / len(points)
    per_pred = pred_time / n_pred
    result = {
        "benchmark": "heatmap",
        "device": str(model.device),
        "backbone": f"{args.backbone} ({args.sam2_weights} weights)",
        "image_hw": [H, W],
        "grid": f"{GRID}x{GRID} (stride {STRIDE}px on a {GRID * STRIDE}px square object)",
        "points": len(points),
        "chunk_size": model.backbone.click_chunk_size,
        "torch_threads": torch.get_num_threads(),
        "per_point_ms": round(1000 * per_point, 3),
        "limit_per_point_ms": round(1000 * per_limit, 3),
        "predictor_loop_per_point_ms": round(1000 * per_pred, 3),
        "predictor_loop_points": n_pred,
        "predictor_loop_note": f"SAM2ImagePredictor.predict + numpy Dice on {n_pred} evenly spaced grid "
                               "points (subsampled to bound runtime); set_image once, untimed",
        "per_point_to_limit_ratio": round(per_point / per_limit, 3),
        "per_point_to_predictor_loop_ratio": round(per_point / per_pred, 3),
        "peak_memory_growth_mib": round(growth, 1),
        "memory_note": "CUDA peak allocated" if model.device.type == "cuda" else "peak RSS sampled every 2 ms",
        "mean_dice": round(float(smap.stats()["mean"]), 4),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
