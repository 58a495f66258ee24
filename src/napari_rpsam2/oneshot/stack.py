"""Segment a stack from one annotated slice with any one-shot method (progress and cancel)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from .. import jobs
from .medpersam import MedPerSAM
from .method import OneShotMethod, SliceResult
from .p2sam import P2SAM
from .persam import PerSAM

__all__ = ["METHODS", "make_method", "segment_stack"]

METHODS = {"persam": PerSAM, "p2sam": P2SAM, "medpersam": MedPerSAM}


def make_method(name: str, model, **options) -> OneShotMethod:
    """A method by name (``persam``, ``p2sam``, ``medpersam``); options go to its constructor."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown one-shot method {name!r}; choose one of {', '.join(METHODS)}") from None
    return cls(model, **options)


def segment_stack(method: OneShotMethod, images, reference_index: int, reference_labels: np.ndarray, *,
                  object_ids: Sequence[int] | None = None, targets: Sequence[int] | None = None,
                  key: Hashable | None = None, progress: jobs.Progress | None = None,
                  cancel: jobs.Cancel | None = None) -> dict[int, SliceResult]:
    """Set the reference once, prepare on the targets, then segment each target slice.

    Parameters
    ----------
    images : array (N, H, W[, C]) or list of slices
    reference_index : int
        The annotated slice.
    reference_labels : array (H, W) int
        Its labels (object ids to propagate, 0 elsewhere).
    targets : sequence of int, optional
        Slices to segment (default: every slice but the reference).
    key : hashable, optional
        Cache key of the stack: slice ``i`` is cached as ``(key, i)``.

    Progress stages: ``"warping"`` (Med-PerSAM training) and ``"slices"``.
    Raises :class:`napari_rpsam2.jobs.Cancelled` when ``cancel()`` turns true.
    """
    n = len(images)
    if not 0 <= int(reference_index) < n:
        raise ValueError(f"reference slice {reference_index} is outside the stack of {n} slices")
    targets = [i for i in range(n) if i != reference_index] if targets is None else [int(t) for t in targets]
    bad = [t for t in targets if not 0 <= t < n]
    if bad:
        raise ValueError(f"target slices {bad[:5]} are outside the stack of {n} slices")

    def slice_key(i: int):
        return None if key is None else (key, i)

    jobs.check(cancel, "one-shot segmentation")
    method.set_reference(np.asarray(images[reference_index]), reference_labels, object_ids,
                         key=slice_key(reference_index))
    method.prepare(images, targets, keys=[slice_key(t) for t in targets], progress=progress, cancel=cancel)
    results = {}
    for done, t in enumerate(targets):
        jobs.check(cancel, "one-shot segmentation")
        results[t] = method.segment(np.asarray(images[t]), t, key=slice_key(t))
        jobs.report(progress, "slices", done + 1, len(targets))
    return results
