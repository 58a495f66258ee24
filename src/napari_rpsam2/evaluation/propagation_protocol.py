"""The propagation protocol: one click per object, SAM2's memory does the rest.

For seed ``s`` in ``0 … clicks-1`` a ``numpy.random.default_rng(s)`` walks the
objects in id order and draws one pixel uniformly inside each object on the
first labelled frame where it appears; that pixel is the object's single
positive click.  All objects are propagated together through the whole
sequence (``direction="both"``), and every labelled frame where an object is
present is scored with Dice and HD95.  Per seed the scores are averaged over
these (object, frame) pairs; the report gives mean ± std (``ddof=0``) across
seeds, per object ("class") and per frame, for plain SAM2 and RP-SAM2 with the
same clicks.  The layout matches :func:`napari_rpsam2.evaluation.protocol.evaluate`,
so :mod:`napari_rpsam2.evaluation.report` writes its JSON, CSV and figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import jobs
from ..model.prompts import FramePrompt
from .metrics import dice, hd95, mean_std
from .protocol import METHODS

__all__ = ["evaluate_propagation", "first_frames", "draw_sequence_clicks"]


def first_frames(labels: Mapping[int, np.ndarray]) -> dict[int, int]:
    """``object id -> first labelled frame where it appears``, ids ascending."""
    first: dict[int, int] = {}
    for t in sorted(labels):
        for obj in np.unique(np.asarray(labels[t])):
            if obj != 0 and int(obj) not in first:
                first[int(obj)] = int(t)
    return dict(sorted(first.items()))


def draw_sequence_clicks(labels: Mapping[int, np.ndarray], seeds: Sequence[int]) -> np.ndarray:
    """Clicks ``(row, col)`` per seed and object (ids ascending), shape (seeds, objects, 2)."""
    first = first_frames(labels)
    inside = [np.argwhere(np.asarray(labels[t]) == obj) for obj, t in first.items()]
    out = np.zeros((len(seeds), len(first), 2))
    for s_i, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        for o_i, pixels in enumerate(inside):
            out[s_i, o_i] = pixels[rng.integers(len(pixels))]
    return out


def _score(result, labels, first) -> tuple[dict, dict]:
    """Dice and HD95 per (object, labelled frame where it is present)."""
    dsc, hd = {}, {}
    for obj in first:
        for t in sorted(labels):
            gt = np.asarray(labels[t]) == obj
            if not gt.any():
                continue
            pred = result.labels[t] == obj
            dsc[obj, t], hd[obj, t] = dice(pred, gt), hd95(pred, gt)
    return dsc, hd


def evaluate_propagation(model, images, labels: Mapping[int, np.ndarray], *, clicks: int = 10,
                         methods: Sequence[str] = ("sam2", "rpsam2"), direction: str = "both",
                         class_names: Mapping[int, str] | None = None, contrast_limits=None,
                         rgb: bool | None = None, progress: jobs.Progress | None = None,
                         cancel: jobs.Cancel | None = None) -> dict:
    """Run the protocol on one sequence.

    Parameters
    ----------
    model : RPSAM2
    images : array-like (N, H, W[, C])
        The frames, read one at a time.
    labels : mapping ``frame index -> (H, W) int``
        Object ids (the same id on every frame for one object); frames
        without labels are left out.
    clicks : int
        Number of seeds.
    progress, cancel
        The long-job contract; stage ``"runs"`` counts propagations.

    Returns
    -------
    dict
        ``protocol`` plus, per method, ``mDSC``/``mHD95`` ``{"mean", "std"}``
        across seeds (Dice in percent, HD95 in pixels), ``per_class`` (per
        object), ``per_frame`` and ``per_seed``.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if clicks < 1:
        raise ValueError(f"clicks must be at least 1, got {clicks}")
    first = first_frames(labels)
    if not first:
        raise ValueError("the labels hold no objects (all 0)")
    seeds = list(range(int(clicks)))
    points = draw_sequence_clicks(labels, seeds)
    names = {obj: (class_names or {}).get(obj, f"object {obj}") for obj in first}
    runs, total = 0, len(seeds) * len(methods)
    scores: dict[str, list[tuple[dict, dict]]] = {m: [] for m in methods}
    for s_i in range(len(seeds)):
        prompts = [FramePrompt(t, obj, points=points[s_i, o_i][None]) for o_i, (obj, t) in enumerate(first.items())]
        for method in methods:
            jobs.check(cancel, "propagation evaluation")
            result = model.propagate(images, prompts, direction=direction, refine=METHODS[method],
                                     contrast_limits=contrast_limits, rgb=rgb, cancel=cancel)
            scores[method].append(_score(result, labels, first))
            runs += 1
            jobs.report(progress, "runs", runs, total)
    report: dict = {"protocol": {
        "clicks_per_object": len(seeds), "seeds": seeds, "direction": direction,
        "click_sampling": "one pixel uniformly inside each object on its first labelled frame per seed, "
                          "numpy default_rng(seed), objects by ascending id",
        "scored": "every labelled frame where the object is present (its clicked frame included)",
        "aggregation": "per seed: mean over (object, frame) pairs; reported: mean and population std "
                       "(ddof=0) across seeds",
        "dice_units": "percent", "hd95_units": "pixels", "empty_prediction": "Dice 0 and HD95 = image diagonal",
        "frames": int(np.shape(images)[0]), "labelled_frames": sorted(int(t) for t in labels),
        "objects": {str(obj): {"name": names[obj], "first_frame": t} for obj, t in first.items()},
    }}
    for method in methods:
        report[method] = _summarise(scores[method], seeds, first, names)
    return report


def _summarise(per_seed: list[tuple[dict, dict]], seeds, first, names) -> dict:
    keys = sorted(per_seed[0][0])
    dsc = np.array([[d[k] for k in keys] for d, _ in per_seed])  # (seeds, pairs)
    hd = np.array([[h[k] for k in keys] for _, h in per_seed])

    def pick(cond) -> list[int]:
        return [i for i, k in enumerate(keys) if cond(k)]

    per_class = {}
    for obj in first:
        cols = pick(lambda k: k[0] == obj)
        per_class[names[obj]] = {"mDSC": mean_std(100 * dsc[:, cols].mean(1)),
                                 "mHD95": mean_std(hd[:, cols].mean(1)), "objects": 1, "frames": len(cols)}
    per_frame = {}
    for t in sorted({k[1] for k in keys}):
        cols = pick(lambda k: k[1] == t)
        per_frame[str(t)] = {"mDSC": mean_std(100 * dsc[:, cols].mean(1)), "mHD95": mean_std(hd[:, cols].mean(1))}
    return {
        "mDSC": mean_std(100 * dsc.mean(1)), "mHD95": mean_std(hd.mean(1)),
        "per_class": per_class, "per_frame": per_frame,
        "per_seed": [{"seed": s, "mDSC": float(100 * dsc[i].mean()), "mHD95": float(hd[i].mean())}
                     for i, s in enumerate(seeds)],
    }
