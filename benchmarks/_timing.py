"""Timing helpers shared by the benchmark scripts (not part of the package).

Two sides of a ratio are timed *interleaved* — A B B A A B … — so that load
from other processes, CPU frequency changes and cache warmth hit both sides
alike; timing all of A and then all of B lets a noisy neighbour skew the ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["timed_once", "interleaved", "median_ratio"]


def timed_once(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes (CUDA work included)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` ``repeats`` times each, in the order A B, B A, A B, …"""
    times_a, times_b = [], []
    for i in range(repeats):
        order = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        for fn, out in order:
            out.append(timed_once(fn))
    return times_a, times_b


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the pairwise ratios (each pair was timed back to back)."""
    return statistics.median(n / d for n, d in zip(numerator, denominator))
