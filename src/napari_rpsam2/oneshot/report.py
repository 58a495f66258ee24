"""Files of the one-shot protocol: JSON, a per-target CSV and a side-by-side figure (atomic writes)."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from ..evaluation.report import write_json

__all__ = ["write_protocol_json", "write_protocol_csv", "write_protocol_figure", "CSV_FIELDS"]

CSV_FIELDS = ("method", "reference", "target", "object", "dice", "hd95", "positive_precision",
              "negative_precision", "positives", "negatives", "warped_dice", "copy_dice", "seconds_per_slice")


def write_protocol_json(report: Mapping, path: str | os.PathLike) -> Path:
    """The whole report as JSON."""
    return write_json(report, path)


def write_protocol_csv(report: Mapping, path: str | os.PathLike) -> Path:
    """One row per method × reference × target object."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for row in report["rows"]:
                writer.writerow({k: "" if row.get(k) is None else (round(row[k], 4) if isinstance(row[k], float)
                                                                   else row[k]) for k in CSV_FIELDS})

    return atomic_write(path, write)


def write_protocol_figure(report: Mapping, path: str | os.PathLike, title: str | None = None) -> Path:
    """Bars per method: mask Dice, positive and negative prompt precision, warped-mask vs copied-mask Dice."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = list(report["methods"])
    metrics = ("dice", "positive_precision", "negative_precision", "warped_dice", "copy_dice")
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(metrics))
    for i, m in enumerate(methods):
        entry = report["methods"][m]
        means = [np.nan if entry[k]["mean"] is None else entry[k]["mean"] for k in metrics]
        stds = [0.0 if entry[k]["std"] is None else entry[k]["std"] for k in metrics]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels(["mask Dice", "positive clicks\ninside", "negative clicks\noutside", "warped mask\nDice",
                        "copied mask\nDice"], fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%", fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title(title or "one-shot protocol", fontsize=9)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
