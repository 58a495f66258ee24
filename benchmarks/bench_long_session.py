"""Memory over a long session: click once on every slice of a long stack.

The embedding cache must keep memory within its budget (least recently used
embeddings are evicted; with ``--disk`` they stay on disk and come back
without the encoder).  Prints one JSON line (the last line of stdout) with
peak RSS and cache size sampled over the slices.

``--fast`` replaces the SAM2 encoder (seconds per slice on a CPU) by one that
returns random embeddings of the right shapes, so the memory behaviour of the
cache and the decoder is what is measured; the decoder runs for real.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.model import ImageEmbedding


def _fake_encoder(seed: int):
    gen = torch.Generator().manual_seed(seed)

    def encode(picture: np.ndarray) -> ImageEmbedding:
        return ImageEmbedding(
            torch.randn(1, 256, 64, 64, generator=gen),
            [torch.randn(1, 32, 256, 256, generator=gen), torch.randn(1, 64, 128, 128, generator=gen)],
            tuple(picture.shape[:2]),
        )

    return encode


class _PeakRSS:
    """Samples the process RSS in a thread; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> "_PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    parser.add_argument("--cache-mib", type=int, default=256, help="embedding cache memory budget")
    parser.add_argument("--fast", action="store_true", help="random embeddings instead of the encoder")
    parser.add_argument("--disk", action="store_true", help="also keep embeddings in a disk cache")
    parser.add_argument("--revisit", type=int, default=20, help="slices clicked again at the end")
    parser.add_argument("--every", type=int, default=10, help="sample memory every N slices")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))

    budget = args.cache_mib << 20
    disk = tempfile.TemporaryDirectory(prefix="rpsam2-cache-") if args.disk else None
    model = RPSAM2.load("sam2.1_hiera_tiny", "random", device=args.device, cache_bytes=budget,
                        cache_dir=disk.name if disk else None)
    encoder_calls = [0]
    real_encode = _fake_encoder(0) if args.fast else model.backbone.encode

    def counted(picture):
        encoder_calls[0] += 1
        return real_encode(picture)

    model.backbone.encode = counted
    h, w = args.size
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (args.slices, h, w, 3), dtype=np.uint8)
    proc = psutil.Process()
    # warm-up: one click so that lazy allocations are in the baseline
    model.segment(stack[0], [[h / 2, w / 2]], key=("warmup", 0))
    model.cache.clear()
    baseline = proc.memory_info().rss
    samples = []
    start = time.perf_counter()
    with _PeakRSS() as peak:
        for i in range(args.slices):
            click = [[rng.uniform(0, h - 1), rng.uniform(0, w - 1)]]
            model.segment(stack[i], click, key=("stack", i))
            if i % args.every == 0 or i == args.slices - 1:
                samples.append({"slice": i, "rss_mib": round(proc.memory_info().rss / 2**20, 1),
                                "peak_rss_mib": round(peak.peak / 2**20, 1),
                                "cache_entries": len(model.cache),
                                "cache_mib": round(model.cache.nbytes / 2**20, 1)})
        calls_before_revisit = encoder_calls[0]
        for i in range(max(0, args.slices - args.revisit - 40), max(0, args.slices - 40)):
            model.segment(stack[i], [[h / 2, w / 2]], key=("stack", i))
    seconds = time.perf_counter() - start
    max_cache = max(s["cache_mib"] for s in samples) * 2**20
    slack = 256 << 20  # decoder temporaries, allocator slack
    growth = peak.peak - baseline
    result = {
        "benchmark": "long_session",
        "mode": "fast (random embeddings, real decoder)" if args.fast else "real encoder",
        "slices": args.slices,
        "image_hw": [h, w],
        "device": str(model.device),
        "cache_budget_mib": args.cache_mib,
        "embedding_mib": round(model.cache.nbytes / max(1, len(model.cache)) / 2**20, 2),
        "disk_cache": bool(args.disk),
        "baseline_rss_mib": round(baseline / 2**20, 1),
        "peak_rss_mib": round(peak.peak / 2**20, 1),
        "peak_rss_growth_mib": round(growth / 2**20, 1),
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "max_cache_mib": round(max_cache / 2**20, 1),
        "evictions": model.cache.stats.evictions,
        "encoder_calls": calls_before_revisit,
        "revisit_encoder_calls": encoder_calls[0] - calls_before_revisit,
        "revisit_disk_hits": model.cache.stats.disk_hits,
        "seconds": round(seconds, 1),
        "samples": samples,
        "within_budget": bool(max_cache <= budget and growth <= budget + slack),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if disk:
        disk.cleanup()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["within_budget"] else 1)
