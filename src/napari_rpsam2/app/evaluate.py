"""The 10-seed single-click evaluation with its report files: the use case behind ``rpsam2 evaluate``.

Progress follows :mod:`napari_rpsam2.jobs` with stage ``"slices"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import jobs
from ..evaluation.protocol import evaluate as run_protocol
from ..evaluation.report import write_csv, write_figure, write_json

if TYPE_CHECKING:
    from ..model import RPSAM2
    from ..training.data import AnnotatedStack

__all__ = ["evaluate", "write_report"]


def evaluate(model: "RPSAM2", stack: "AnnotatedStack", *, clicks: int = 10,
             methods: Sequence[str] = ("sam2", "rpsam2"), hd95_convention: str = "pooled",
             progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None) -> dict:
    """SAM2 and RP-SAM2 on ``stack``: one click per object per seed, ``clicks`` seeds.

    Returns the protocol's report (see :func:`napari_rpsam2.evaluation.protocol.evaluate`);
    ``hd95_convention`` is ``"pooled"`` (medpy) or ``"max-directed"`` (MONAI).

    Raises
    ------
    ValueError
        ``clicks`` below 1.
    napari_rpsam2.jobs.Cancelled
    """
    if clicks < 1:
        raise ValueError(f"the number of seeds (clicks) must be at least 1, got {clicks}")
    return run_protocol(model, stack, clicks=clicks, methods=methods, hd95_convention=hd95_convention,
                        progress=jobs.stage_progress(progress, "slices"), cancel=cancel)


def write_report(report: dict, out: str | os.PathLike, *, title: str | None = None) -> list[Path]:
    """Write ``out`` (.json) with a .csv and a .png beside it (each atomically); returns the paths."""
    out = Path(out)
    return [write_json(report, out), write_csv(report, out.with_suffix(".csv")),
            write_figure(report, out.with_suffix(".png"), title=title)]
