"""The 10-seed single-click evaluation protocol of the RP-SAM2 paper (docs/method.md).

For seed ``s`` in ``0 … clicks-1`` a ``numpy.random.default_rng(s)`` walks the
objects in stack order and draws one pixel uniformly inside each; that pixel
is a single positive click.  Plain SAM2 and RP-SAM2 get the same clicks.  Per
seed, Dice and HD95 are averaged over all objects and over the objects of
each class; mean ± std (population std, ``ddof=0``) are taken across seeds.
Two summaries are reported side by side:

* **object-weighted** (``mDSC``, ``mHD95``): mean and std across seeds of the
  all-object average; each object counts once, so common classes weigh more.
* **class average** (``class_average``): the plain mean over classes (but the ids a
  given class map does not name, class ``unlisted``) of the
  per-class means, and the plain mean over classes of the per-class stds.
  This is the "Avg." row of the RP-SAM2 paper's Table 1, and the figure to
  compare with it.  Its std is not the std of anything: it is the typical
  per-class spread across seeds, usually larger than the object-weighted std.

With a single class the two means agree.  An empty prediction scores Dice 0
and HD95 = image diagonal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..jobs import Cancelled
from ..model.backbone import logits_to_image
from .metrics import HD95_CONVENTIONS, UNLISTED_CLASS, dice, hd95, mean_std

__all__ = ["evaluate", "draw_clicks", "summarize", "METHODS"]

METHODS = {"sam2": False, "rpsam2": True}


EvaluationCancelled = Cancelled  # raised when ``cancel()`` turns true


def draw_clicks(stack, seeds: Sequence[int]) -> np.ndarray:
    """Clicks ``(row, col)`` for every seed and object, shape (seeds, objects, 2)."""
    objects = stack.objects()
    inside = [np.argwhere(stack.object_mask(o)) for o in objects]
    out = np.zeros((len(seeds), len(objects), 2), np.float64)
    for s_i, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        for o_i, pixels in enumerate(inside):
            out[s_i, o_i] = pixels[rng.integers(len(pixels))]
    return out


def summarize(dsc: np.ndarray, hd: np.ndarray, classes: Sequence[str], seeds: Sequence[int]) -> dict:
    """One method's report from its per-seed, per-object scores.

    Parameters
    ----------
    dsc, hd : array (seeds, objects)
        Dice in ``[0, 1]`` and HD95 in pixels of each object for each seed.
    classes : sequence of str
        Class name of each object.
    seeds : sequence of int
        The seeds, in row order.

    Returns
    -------
    dict
        ``mDSC``/``mHD95`` (object-weighted ``{"mean", "std"}``),
        ``class_average`` (same shape plus ``classes``), ``per_class`` and
        ``per_seed``; Dice in percent.
    """
    dsc, hd = 100.0 * np.asarray(dsc, float), np.asarray(hd, float)
    per_class = {}
    for name in sorted(set(classes)):
        cols = [i for i, c in enumerate(classes) if c == name]
        per_class[name] = {"mDSC": mean_std(dsc[:, cols].mean(1)), "mHD95": mean_std(hd[:, cols].mean(1)),
                           "objects": len(cols)}
    counted = {n: r for n, r in per_class.items() if n != UNLISTED_CLASS} or per_class  # ids not in the map
    average = {key: {stat: float(np.mean([row[key][stat] for row in counted.values()]))
                     for stat in ("mean", "std")} for key in ("mDSC", "mHD95")}
    return {
        "mDSC": mean_std(dsc.mean(1)),
        "mHD95": mean_std(hd.mean(1)),
        "class_average": {**average, "classes": len(counted)},
        "per_class": per_class,
        "per_seed": [{"seed": int(s), "mDSC": float(dsc[i].mean()), "mHD95": float(hd[i].mean())}
                     for i, s in enumerate(seeds)],
    }


def evaluate(
    model,
    stack,
    *,
    clicks: int = 10,
    methods: Sequence[str] = ("sam2", "rpsam2"),
    chunk_size: int | None = None,
    hd95_convention: str = "pooled",
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict:
    """Run the protocol on an annotated stack.

    Parameters
    ----------
    model : RPSAM2
        The model; ``sam2`` uses its backbone alone, ``rpsam2`` its shift block too.
    stack : AnnotatedStack
        Images and labels.
    clicks : int
        Number of seeds (one single click per object per seed).
    methods : sequence of str
        Any of ``"sam2"`` and ``"rpsam2"``.
    hd95_convention : str
        ``"pooled"`` (MedPy, the default) or ``"max-directed"`` (MONAI); see
        :mod:`napari_rpsam2.evaluation.metrics`.
    progress : callable(done, total), optional
        Called after each slice.
    cancel : callable() -> bool, optional
        Checked between slices; raises :class:`EvaluationCancelled`.

    Returns
    -------
    dict
        ``{"protocol": {...}, method: {"mDSC": {"mean", "std"}, "mHD95": {...},
        "class_average": {"mDSC": {...}, "mHD95": {...}, "classes"},
        "per_class": {class: {"mDSC", "mHD95", "objects"}}, "per_seed": [...]}}``
        with Dice in percent and HD95 in pixels (:func:`summarize`).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown evaluation method(s) {unknown}; choose from {list(METHODS)}")
    if clicks < 1:
        raise ValueError(f"clicks must be at least 1, got {clicks}")
    if hd95_convention not in HD95_CONVENTIONS:
        raise ValueError(f"unknown HD95 convention {hd95_convention!r}; choose one of {list(HD95_CONVENTIONS)}")
    seeds = list(range(int(clicks)))
    objects = stack.objects()
    if not objects:
        raise ValueError("the stack has no objects to evaluate")
    points = draw_clicks(stack, seeds)
    n_obj = len(objects)
    scores = {m: (np.zeros((len(seeds), n_obj)), np.zeros((len(seeds), n_obj))) for m in methods}
    slices = sorted({o.slice_index for o in objects})
    for done, index in enumerate(slices, 1):
        if cancel is not None and cancel():
            raise EvaluationCancelled("evaluation was cancelled")
        members = [i for i, o in enumerate(objects) if o.slice_index == index]
        emb = model.embed(np.asarray(stack.images[index]), contrast_limits=stack.contrast_limits,
                          gamma=getattr(stack, "gamma", 1.0), rgb=stack.rgb)
        masks = [stack.object_mask(objects[i]) for i in members]
        flat = points[:, members].reshape(-1, 2)  # seed-major: row k is seed k // len(members)
        for method in methods:
            dsc, hd = scores[method]
            for sl, _, logits, _ in model.iter_single_clicks(emb, flat, refine=METHODS[method],
                                                             chunk_size=chunk_size):
                with torch.inference_mode():
                    preds = (logits_to_image(logits, emb.image_hw) > 0).cpu().numpy()
                for k, pred in zip(range(sl.start, sl.stop), preds):
                    s_i, m_i = divmod(k, len(members))
                    dsc[s_i, members[m_i]] = dice(pred, masks[m_i])
                    hd[s_i, members[m_i]] = hd95(pred, masks[m_i], hd95_convention)
        if progress is not None:
            progress(done, len(slices))
    classes = sorted({o.class_name for o in objects})
    result: dict = {"protocol": {
        "clicks_per_object": len(seeds), "seeds": seeds,
        "click_sampling": "one pixel uniformly inside each object per seed, numpy default_rng(seed), "
                          "objects in stack order",
        "aggregation": "per seed: mean over all objects and over each class's objects; reported: mean and "
                       "population std (ddof=0) across seeds. mDSC/mHD95: object-weighted (all-object "
                       "average per seed); class_average: mean over classes of the per-class means and of the "
                       "per-class stds (the paper's Avg. row)",
        "dice_units": "percent", "hd95_units": "pixels",
        "hd95": hd95_convention, "hd95_definition": HD95_CONVENTIONS[hd95_convention],
        "empty_prediction": "Dice 0 and HD95 = image diagonal",
        "slices": len(slices), "objects": n_obj, "classes": classes,
    }}
    for method in methods:
        result[method] = summarize(*scores[method], [o.class_name for o in objects], seeds)
    return result
