"""One contrast rule per stack: the limits that map every slice to what SAM2 sees.

A stack is mapped with one pair of limits for all its slices (never slice by
slice, which makes the features flicker along a video): a volume's intensity
window, 8-bit data's full range, or the lowest and highest values of the
stack, found on a sample of its slices when it is long.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .source import InputError

__all__ = ["WINDOWS", "parse_window", "window_limits", "stack_limits", "contrast_record", "SAMPLE_SLICES"]

WINDOWS: dict[str, tuple[float, float]] = {
    "soft-tissue": (40.0, 400.0),
    "abdomen": (60.0, 400.0),
    "liver": (60.0, 160.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "mediastinum": (50.0, 350.0),
}
"""CT windows as (level, width) in Hounsfield units."""

SAMPLE_SLICES = 32
"""Slices read to find a long stack's limits."""


def parse_window(text: str | Sequence[float] | None) -> tuple[str, float, float] | None:
    """``"lung"`` or ``"40,400"`` (level, width) → ``(name, level, width)``; ``None`` stays ``None``."""
    if text is None:
        return None
    if not isinstance(text, str):
        level, width = (float(v) for v in text)
        name = f"{level:g},{width:g}"
    elif text.strip().lower() in WINDOWS:
        name = text.strip().lower()
        level, width = WINDOWS[name]
    else:
        parts = text.replace(" ", "").split(",")
        try:
            level, width = (float(p) for p in parts)
        except ValueError:
            raise InputError(f"window {text!r} is neither a preset ({', '.join(WINDOWS)}) nor 'level,width' "
                             "numbers such as 40,400") from None
        name = f"{level:g},{width:g}"
    if not (np.isfinite(level) and np.isfinite(width) and width > 0):
        raise InputError(f"window {text!r}: the width must be a positive number")
    return name, float(level), float(width)


def window_limits(level: float, width: float) -> tuple[float, float]:
    """Contrast limits ``(level - width/2, level + width/2)`` of a window."""
    return float(level) - float(width) / 2, float(level) + float(width) / 2


def _sample(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def stack_limits(stack, *, samples: int = SAMPLE_SLICES) -> tuple[tuple[float, float], int]:
    """One ``(low, high)`` pair for a whole stack and how many slices were read to find it.

    8-bit and boolean data use their full range (0–255, 0–1) without reading
    anything; other data the lowest and highest finite values of ``samples``
    evenly spaced slices (all of them for a short stack).
    """
    dtype = np.dtype(stack.dtype) if hasattr(stack, "dtype") else np.asarray(stack[0]).dtype
    if dtype == np.uint8:
        return (0.0, 255.0), 0
    if dtype == np.bool_:
        return (0.0, 1.0), 0
    lo, hi = np.inf, -np.inf
    picked = _sample(int(stack.shape[0]) if hasattr(stack, "shape") else len(stack), samples)
    read = getattr(stack, "read", stack.__getitem__)  # a folder's frames may differ in size
    for i in picked:
        plane = np.asarray(read(i))
        finite = plane[np.isfinite(plane)] if np.issubdtype(plane.dtype, np.floating) else plane
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if not lo <= hi:
        return (0.0, 1.0), len(picked)
    if hi <= lo:
        hi = lo + max(1.0, abs(lo) * 1e-6)
    return (lo, hi), len(picked)


def contrast_record(source, limits: Sequence[float] | None = None) -> dict:
    """The contrast rule of a source as recorded in outputs' metadata."""
    if limits is None:
        limits = source.contrast_limits
    window = source.meta.get("window")
    if window is not None:
        rule = "window"
    elif np.dtype(source.data.dtype) == np.uint8:
        rule = "dtype range"
    else:
        rule = "stack range"
    record = {"rule": rule, "limits": [float(v) for v in limits] if limits is not None else None}
    if window is not None:
        record["window"] = window
    if rule == "stack range" and "sampled_slices" in source.meta:
        record["sampled_slices"] = source.meta["sampled_slices"]
    return record
