"""Evaluation report files: JSON, CSV and a PNG figure, each written atomically.

The input is the dictionary returned by
:func:`napari_rpsam2.evaluation.protocol.evaluate`: for each method
(``sam2``, ``rpsam2``) ``mDSC`` and ``mHD95`` as ``{"mean", "std"}`` across
seeds (object-weighted), ``class_average`` (the paper's "Avg." row), a
``per_class`` table and ``per_seed`` values, plus ``protocol``.  Tables and
the figure end with two summary rows, named :data:`OBJECT_WEIGHTED` and
:data:`CLASS_AVERAGE`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write

__all__ = ["write_json", "write_csv", "write_figure", "method_names", "class_rows", "seed_values",
           "to_jsonable", "OBJECT_WEIGHTED", "CLASS_AVERAGE"]

OBJECT_WEIGHTED = "object-weighted"  # all objects averaged per seed, then mean ± std across seeds
CLASS_AVERAGE = "class average"  # mean over classes of per-class means and stds (the paper's Avg. row)

METRICS = ("mDSC", "mHD95")
CSV_FIELDS = ("method", "class", "objects", "mDSC_mean", "mDSC_std", "mHD95_mean", "mHD95_std")


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays and tensors become numbers/lists, NaN/inf become null."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def write_json(report: Mapping, path: str | os.PathLike) -> Path:
    """Write the report as indented JSON (strict: no NaN), atomically."""
    text = json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)


def method_names(report: Mapping) -> list[str]:
    """Methods in the report (``sam2`` first, then ``rpsam2``, then any others)."""
    found = [k for k, v in report.items() if isinstance(v, Mapping) and "mDSC" in v]
    order = {"sam2": 0, "rpsam2": 1}
    return sorted(found, key=lambda k: (order.get(k, 2), k))


def _mean_std(entry: Any) -> tuple[float, float]:
    if isinstance(entry, Mapping):
        return float(_num(entry.get("mean"))), float(_num(entry.get("std")))
    return float(_num(entry)), float("nan")


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def class_rows(method_report: Mapping) -> list[dict[str, Any]]:
    """Rows ``class, objects, mDSC_mean, mDSC_std, mHD95_mean, mHD95_std`` of one method.

    ``per_class`` may be a mapping ``{class: {...}}`` or a list of dicts with a
    ``class`` key.  The :data:`OBJECT_WEIGHTED` row follows, then the
    :data:`CLASS_AVERAGE` row when the report has ``class_average``.
    """
    table = method_report.get("per_class") or {}
    items = table.items() if isinstance(table, Mapping) else (
        (row.get("class", row.get("name", i)), row) for i, row in enumerate(table))
    rows = []
    for name, entry in items:
        rows.append(_row(str(name), entry))
    total = sum(r["objects"] for r in rows if r["objects"] != "")
    rows.append(_row(OBJECT_WEIGHTED, {**method_report, "objects": method_report.get("objects", total or None)}))
    average = method_report.get("class_average")
    if isinstance(average, Mapping):
        rows.append(_row(CLASS_AVERAGE, {**average, "objects": total or None}))
    return rows


def _row(name: str, entry: Mapping) -> dict[str, Any]:
    dsc = _mean_std(entry.get("mDSC", entry.get("dice")))
    hd = _mean_std(entry.get("mHD95", entry.get("hd95")))
    n = entry.get("objects", entry.get("n_objects", entry.get("n")))
    return {"class": name, "objects": "" if n is None else int(n), "mDSC_mean": dsc[0],
            "mDSC_std": dsc[1], "mHD95_mean": hd[0], "mHD95_std": hd[1]}


def seed_values(method_report: Mapping, metric: str = "mDSC") -> list[tuple[int, float]]:
    """``(seed, value)`` pairs of one metric from ``per_seed`` (list or mapping forms)."""
    per_seed = method_report.get("per_seed")
    if per_seed is None:
        return []
    if isinstance(per_seed, Mapping):
        if metric in per_seed and not isinstance(per_seed[metric], Mapping):
            seeds = per_seed.get("seeds", range(len(per_seed[metric])))
            return [(int(s), _num(v)) for s, v in zip(seeds, per_seed[metric])]
        return [(int(s), _num(v[metric] if isinstance(v, Mapping) else v))
                for s, v in per_seed.items()]
    out = []
    for i, v in enumerate(per_seed):
        if isinstance(v, Mapping):
            out.append((int(v.get("seed", i)), _num(v.get(metric))))
        else:
            out.append((i, _num(v)))
    return out


def _fmt(v: Any) -> Any:
    return "" if isinstance(v, float) and not math.isfinite(v) else (round(v, 4) if isinstance(v, float) else v)


def write_csv(report: Mapping, path: str | os.PathLike) -> Path:
    """One row per method × class, plus the two summary rows per method, atomically."""
    rows = [{"method": m, **r} for m in method_names(report) for r in class_rows(report[m])]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _fmt(row[k]) for k in CSV_FIELDS})

    return atomic_write(path, write)


def write_figure(report: Mapping, path: str | os.PathLike, title: str | None = None) -> Path:
    """PNG: per-class Dice and HD95 bars (± std across seeds) and Dice per seed, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = method_names(report)
    if not methods:
        raise ValueError("the report holds no method results (expected 'sam2' and/or 'rpsam2')")
    fig = Figure(figsize=(13, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_dsc, ax_hd, ax_seed = fig.subplots(1, 3)
    classes = [r["class"] for r in class_rows(report[methods[0]])]
    x = np.arange(len(classes))
    width = 0.8 / len(methods)
    colors = {"sam2": "tab:gray", "rpsam2": "tab:orange"}
    for i, m in enumerate(methods):
        rows = {r["class"]: r for r in class_rows(report[m])}
        color = colors.get(m)
        for ax, key in ((ax_dsc, "mDSC"), (ax_hd, "mHD95")):
            means = [rows.get(c, {}).get(f"{key}_mean", np.nan) for c in classes]
            stds = np.nan_to_num([rows.get(c, {}).get(f"{key}_std", np.nan) for c in classes])
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
                   label=m, color=color)
        seeds = seed_values(report[m], "mDSC")
        if seeds:
            s, v = zip(*seeds)
            ax_seed.plot(s, v, marker="o", label=m, color=color)
    summaries = sum(c in (OBJECT_WEIGHTED, CLASS_AVERAGE) for c in classes)
    for ax, label in ((ax_dsc, "mDSC (%)"), (ax_hd, "mHD95 (px)")):
        ax.axvline(len(classes) - summaries - 0.5, color="0.6", lw=0.8, ls="--")  # classes | summaries
        ax.set_xticks(x)
        ax.set_xticklabels(classes, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(f"{label} per class, ± std across seeds", fontsize=9)
        ax.legend(fontsize=8)
    ax_dsc.set_ylim(0, 100)
    ax_seed.set_xlabel("seed")
    ax_seed.set_ylabel("mDSC (%)")
    ax_seed.set_title("Dice per seed (one click per object)", fontsize=9)
    ax_seed.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
