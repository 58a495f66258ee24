"""Click-sensitivity heatmaps of one object: the use case behind the heatmap dock and ``rpsam2 heatmap``.

SAM2's map is always computed; RP-SAM2's only when asked, or (``refined=None``)
when the model's shift block is trained (an untrained block is the identity,
so its map would repeat SAM2's).  Progress follows :mod:`napari_rpsam2.jobs`
with one stage per method, ``"sam2"`` then ``"rpsam2"``, in grid clicks.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import jobs
from ..evaluation.sensitivity import SensitivityMap, heatmap
from ..model.shift_block import offset_is_identity
from ..training.components import DEFAULT_MERGE_GAP, split_objects

if TYPE_CHECKING:
    from ..model import RPSAM2

__all__ = ["SensitivityMap", "sensitivity_maps", "object_mask", "maps_wanted"]


def maps_wanted(model: "RPSAM2", refined: bool | None = None) -> tuple[bool, ...]:
    """The ``refine`` flags to map: ``(False,)`` or ``(False, True)``."""
    if refined is None:
        refined = not offset_is_identity(model.shift_block)
    return (False, True) if refined else (False,)


def object_mask(labels: np.ndarray, object_id: int, *, split_binary: bool = False,
                merge_gap: float | None = None, where: str = "the labels") -> np.ndarray:
    """Boolean mask of ``object_id`` in a 2D label image.

    With ``split_binary`` a binary mask (one non-zero value) is first split
    into objects numbered 1, 2, … as the training data reader does
    (connected regions, those closer than ``merge_gap`` pixels joined;
    ``None``: the reader's default); otherwise ids are taken as they are.

    Raises
    ------
    ValueError
        The id is not there; the message lists the ids that are.
    """
    labels = np.asarray(labels)
    if split_binary:
        values = np.unique(labels[labels != 0])
        if values.size == 1:
            labels = split_objects(labels != 0, DEFAULT_MERGE_GAP if merge_gap is None else merge_gap)
    mask = labels == object_id
    if not mask.any():
        ids = [int(i) for i in np.unique(labels) if i != 0][:20]
        raise ValueError(f"object {object_id} is not in {where}; ids there: {ids or 'none'}")
    return mask


def sensitivity_maps(model: "RPSAM2", image: np.ndarray, mask: np.ndarray, *, stride: int | None = None,
                     refined: bool | None = None, contrast_limits: Sequence[float] | None = None, gamma: float = 1.0,
                     rgb: bool | None = None, key: Hashable | None = None,
                     progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None
                     ) -> list[SensitivityMap]:
    """SAM2's (and RP-SAM2's) sensitivity map of one object on one 2D slice.

    Parameters
    ----------
    model : RPSAM2
    image : array (H, W) or (H, W, C)
    mask : array (H, W)
        The object.
    stride : int, optional
        Grid spacing in pixels (default about 12×12 points inside the object).
    refined : bool, optional
        Also map RP-SAM2; ``None`` = when the shift block is trained.
    contrast_limits, gamma, rgb, key
        How the encoder sees the slice and its cache key (see ``RPSAM2.embed``).
    progress, cancel
        The long-job contract (stages ``"sam2"``, ``"rpsam2"``).

    Raises
    ------
    napari_rpsam2.jobs.Cancelled
    """
    maps = []
    for refine in maps_wanted(model, refined):
        stage = "rpsam2" if refine else "sam2"
        jobs.check(cancel, "the heatmap")
        maps.append(heatmap(model, image, mask, stride=stride, refine=refine, contrast_limits=contrast_limits,
                            gamma=gamma, rgb=rgb, key=key, progress=jobs.stage_progress(progress, stage),
                            cancel=cancel))
    return maps
