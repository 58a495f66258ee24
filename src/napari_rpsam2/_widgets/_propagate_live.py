"""The Propagate dock's temporary "<image> propagating" layer: the slices a run has finished, as they come.

Its data is a compact :class:`~napari_rpsam2.model.label_planes.LabelPlanes`
(per slice the box of the objects and run-length values; napari asks for one
plane at a time), so showing a run costs what its outlines cost, not an int32
plane per slice.  The worker sends each slice already compact
(:meth:`LiveLayer.message`), so slices waiting for the main thread are small too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..jobs import CancelFlag
from ..model.label_planes import LabelPlanes, Plane
from ._slicing import layer_shape
from ._views import METADATA_KEY, mark_plugin_layer, plugin_layers
from ._workspace import unwrap

__all__ = ["LiveLayer"]

ROLE = "propagating"


class LiveLayer:
    """The live layer of each image in ``viewer`` (made, filled and removed by the Propagate dock)."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer

    def layer(self, image: Any) -> Any | None:
        """The image's live layer, or ``None``."""
        for layer in plugin_layers(self.viewer, ROLE):
            if layer.metadata[METADATA_KEY].get("image") == image.unique_id:
                return layer
        return None

    def start(self, image: Any) -> Any:
        """An empty live layer for ``image`` (made if there is none); the active layer stays active."""
        empty = LabelPlanes(layer_shape(image), np.int32)
        layer = self.layer(image)
        if layer is not None:
            layer.data = empty
            return layer
        active = self.viewer.layers.selection.active  # e.g. the click dock's clicks: they stay usable
        layer = self.viewer.add_labels(empty, name=f"{image.name} propagating", scale=image.scale,
                                       translate=image.translate, opacity=0.5)
        layer = mark_plugin_layer(unwrap(layer), ROLE, image=image.unique_id)
        layer.editable = False  # it shows a run as it goes: painting there would change nothing the run writes
        if active is not None:
            self.viewer.layers.selection.active = active
        return layer

    @staticmethod
    def message(flag: CancelFlag, t: int, plane: np.ndarray) -> tuple:
        """What the worker sends for slice ``t``: its labels, compact."""
        return flag, int(t), np.shape(plane), Plane.of(plane)

    def show(self, image: Any, message: tuple) -> None:
        """Draw a worker's slice (see :meth:`message`) in the image's live layer."""
        _, t, shape, plane = message
        live = None if image is None else self.layer(image)
        if live is None or not isinstance(live.data, LabelPlanes) or live.data.shape[1:] != tuple(shape):
            return
        live.data.put(t, plane)
        live.refresh()

    def drop(self) -> None:
        """Remove every live layer (the active layer stays active)."""
        active = self.viewer.layers.selection.active
        for layer in plugin_layers(self.viewer, ROLE):
            self.viewer.layers.remove(layer)
        if active is not None and active in self.viewer.layers:  # removing a layer clears the selection
            self.viewer.layers.selection.active = active
