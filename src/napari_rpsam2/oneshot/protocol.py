"""The one-shot protocol: one annotated slice as reference, every other slice as target.

For each reference (each slice in turn, or a fixed one) and each method, the
reference's objects are propagated to every other slice.  Per target object
it records Dice and HD95 of SAM2's mask, the prompt precision (share of
generated positive clicks inside the true object, of negative clicks outside
it), and for Med-PerSAM the Dice of the warped mask prompt.  Copying the
reference mask unchanged is the baseline every warped mask is compared with.
Prompt precision and the warped-mask Dice do not depend on SAM2's weights
(Med-PerSAM's precision is taken on its first prompts, made from the warped
mask before SAM2 answers).

Label ids must mean the same object on every slice (binary masks: id 1).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from .. import jobs
from ..evaluation.metrics import dice, hd95
from .stack import make_method, segment_stack

__all__ = ["one_shot_protocol", "prompt_precision", "PROMPT_METHODS"]

PROMPT_METHODS = ("persam", "p2sam", "medpersam")


def prompt_precision(points: np.ndarray, labels: np.ndarray, truth: np.ndarray) -> tuple[float | None, float | None]:
    """Share of positive clicks inside ``truth`` and of negative clicks outside it (``None`` when there are none)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    h, w = truth.shape
    rows = np.clip(np.round(pts[:, 0]).astype(int), 0, h - 1)
    cols = np.clip(np.round(pts[:, 1]).astype(int), 0, w - 1)
    inside = truth[rows, cols]
    lab = np.asarray(labels)
    pos, neg = lab == 1, lab == 0
    return (float(inside[pos].mean()) if pos.any() else None, float((~inside[neg]).mean()) if neg.any() else None)


def _mean_std(values: list) -> dict:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    return {"mean": float(v.mean()) if v.size else None, "std": float(v.std()) if v.size else None, "n": int(v.size)}


def _rows(method: str, reference: int, results, labels, ref_labels, seconds: float) -> list[dict]:
    rows = []
    for t, res in results.items():
        truth_plane = np.asarray(labels[t])
        for obj in res.objects:
            truth = truth_plane == obj.object_id
            if not truth.any():
                continue
            pts, lab = obj.info.get("initial_points", obj.points), obj.info.get("initial_labels", obj.labels)
            pos, neg = prompt_precision(pts, lab, truth)
            copy = np.asarray(ref_labels) == obj.object_id
            rows.append({
                "method": method, "reference": reference, "target": int(t), "object": obj.object_id,
                "dice": _pct(dice(obj.mask, truth)), "hd95": hd95(obj.mask, truth),
                "positive_precision": _pct(pos), "negative_precision": _pct(neg),
                "positives": int((lab == 1).sum()), "negatives": int((lab == 0).sum()),
                "warped_dice": None if obj.mask_prompt is None else _pct(dice(obj.mask_prompt, truth)),
                "copy_dice": _pct(dice(copy, truth)) if copy.shape == truth.shape else None,
                "seconds_per_slice": seconds,
            })
    return rows


def _pct(share: float | None) -> float | None:
    """A share in [0, 1] as percent (Dice is reported in percent everywhere, as by ``rpsam2 evaluate``)."""
    return None if share is None else 100.0 * float(share)


def _summary(rows: list[dict]) -> dict:
    keys = ("dice", "hd95", "positive_precision", "negative_precision", "warped_dice", "copy_dice",
            "seconds_per_slice")
    return {k: _mean_std([r[k] for r in rows]) for k in keys} | {"targets": len(rows)}


def one_shot_protocol(model, images, labels, *, methods: Sequence[str] = PROMPT_METHODS,
                      references: Sequence[int] | None = None, refine: bool = False,
                      options: Mapping[str, dict] | None = None, rgb: bool | None = None,
                      progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None) -> dict:
    """Run the protocol on annotated slices of one stack.

    Parameters
    ----------
    images, labels : sequences of (H, W[, C]) and (H, W) arrays
        Slices and their labels (same ids = same object on every slice).
    references : sequence of int, optional
        Reference slices (default: each slice in turn).
    options : mapping method → dict, optional
        Constructor options per method (e.g. ``{"medpersam": {"config": WarpConfig(...)}}``).

    Returns
    -------
    dict
        ``methods`` (per method: mean/std/n of every metric), ``rows`` (one per
        target object) and ``protocol`` (settings).  Dice and prompt precision in percent, HD95 in pixels.
    """
    n = len(images)
    if n < 2:
        raise ValueError("the one-shot protocol needs at least two annotated slices (one reference, one target)")
    references = list(range(n)) if references is None else [int(r) for r in references]
    options = dict(options or {})
    rows: list[dict] = []
    warping_seconds: dict[str, list[float]] = {}
    total, done = len(references) * len(methods), 0
    for r in references:
        if not np.any(labels[r]):
            continue
        for name in methods:
            jobs.check(cancel, "the one-shot protocol")
            method = make_method(name, model, refine=refine, rgb=rgb, **options.get(name, {}))
            start = time.perf_counter()
            results = segment_stack(method, images, r, np.asarray(labels[r]), cancel=cancel)
            seconds = (time.perf_counter() - start) / max(1, n - 1)
            rows += _rows(name, r, results, labels, labels[r], seconds)
            if hasattr(method, "training_seconds"):
                warping_seconds.setdefault(name, []).append(method.training_seconds)
            done += 1
            jobs.report(progress, "references", done, total)
    summary = {m: _summary([row for row in rows if row["method"] == m]) for m in methods}
    for m, secs in warping_seconds.items():
        summary[m]["warping_seconds_per_stack"] = _mean_std(secs)
    return {"methods": summary, "rows": rows,
            "protocol": {"slices": n, "references": references, "refine": refine, "methods": list(methods),
                         "backbone": model.backbone.name, "sam2_weights": model.backbone.weights_signature}}
