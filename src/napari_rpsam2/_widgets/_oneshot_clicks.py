"""The one-shot dock's Points layer: the generated clicks of every slice, editable by the person.

One layer per image, on the image's grid (``(slice, row, col)`` points),
marked ``metadata["napari_rpsam2"] = {"role": "oneshot clicks", "image": <unique_id>}``
so a reopened dock finds it and the layer pickers leave it out.  Positive
clicks are green, negative ones red; features ``label`` (1/0) and
``object_id`` say what each click prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Points

from ._slicing import layer_shape
from ._views import METADATA_KEY

if TYPE_CHECKING:
    import napari

    from ..app.oneshot import OneShotClicks

__all__ = ["COLORS", "ROLE", "SliceClicks", "clicks_layer", "restore", "show_clicks", "slice_clicks", "snapshot"]

ROLE = "oneshot clicks"
COLORS = {1: (0.2, 0.9, 0.2, 1.0), 0: (1.0, 0.25, 0.25, 1.0)}
"""Face colour by click label: positive green, negative red."""


@dataclass
class SliceClicks:
    """The clicks of one slice as the layer holds them now (after the person's edits)."""

    points: np.ndarray  # (M, 2) row, col
    labels: np.ndarray  # (M,) 1 / 0
    object_ids: np.ndarray  # (M,)


def _mine(layer: Any, image: Any) -> bool:
    mark = getattr(layer, "metadata", {}).get(METADATA_KEY)
    return isinstance(mark, dict) and mark.get("role") == ROLE and mark.get("image") == image.unique_id


def clicks_layer(viewer: napari.viewer.Viewer, image: Any, *, create: bool = True) -> Points | None:
    """The image's clicks layer (found by its metadata), made when missing and ``create`` is true."""
    for layer in viewer.layers:
        if _mine(layer, image):
            return layer
    if not create:
        return None
    size = max(6.0, 0.035 * min(layer_shape(image)[-2:]))
    layer = Points(np.zeros((0, 3)), ndim=3, name=f"{image.name} one-shot clicks", size=size,
                   features={"label": np.zeros(0, int), "object_id": np.zeros(0, int)},
                   feature_defaults={"label": 1, "object_id": 1}, border_color="white",
                   scale=image.scale, translate=image.translate,
                   metadata={METADATA_KEY: {"role": ROLE, "image": image.unique_id}})
    viewer.add_layer(layer)
    return layer


def _set(layer: Points, data: np.ndarray, labels: np.ndarray, object_ids: np.ndarray) -> None:
    layer.selected_data = set()
    layer.data = np.asarray(data, float).reshape(-1, 3)
    layer.features = {"label": np.asarray(labels, int), "object_id": np.asarray(object_ids, int)}
    if len(labels):
        layer.face_color = np.array([COLORS[int(v)] for v in labels])
        layer.feature_defaults = {"label": 1, "object_id": int(object_ids[0])}


def snapshot(layer: Points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, labels, object_ids)`` copies, to put back with :func:`restore`."""
    data = np.array(layer.data, float).reshape(-1, 3)
    feats = layer.features
    n = len(data)
    labels = np.asarray(feats["label"], int) if "label" in feats else np.ones(n, int)
    oids = np.asarray(feats["object_id"], int) if "object_id" in feats else np.ones(n, int)
    return data, labels.copy(), oids.copy()


def restore(layer: Points, state: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Put a :func:`snapshot` back."""
    _set(layer, *state)


def show_clicks(layer: Points, clicks: OneShotClicks) -> None:
    """Replace the clicks of the slices in ``clicks`` by them; other slices keep theirs."""
    data, labels, oids = snapshot(layer)
    redone = np.isin(np.round(data[:, 0]).astype(int), np.unique(clicks.data[:, 0]).astype(int))
    _set(layer, np.concatenate([data[~redone], clicks.data]), np.concatenate([labels[~redone], clicks.label]),
         np.concatenate([oids[~redone], clicks.object_id]))


def slice_clicks(layer: Points, index: int) -> SliceClicks:
    """The clicks on slice ``index`` as the layer holds them now."""
    data, labels, oids = snapshot(layer)
    on = np.round(data[:, 0]).astype(int) == int(index)
    return SliceClicks(data[on, 1:], labels[on], oids[on])
