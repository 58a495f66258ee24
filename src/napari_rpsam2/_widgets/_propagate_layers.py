"""The layers the Propagate dock makes for an image: drawn boxes and a new "Write into" layer.

A run's live slices are shown by :mod:`._propagate_live`.

- ``<image> boxes``: a Shapes layer of the plugin where the person drags
  rectangles (one object each);
- ``<image> propagated``: the Labels layer made when a run ends with "Write
  into" on "(new Labels layer)", marked as the image's objects layer.

Making or removing a layer does not take the focus from the layer the person
works on (e.g. the click dock's clicks).
"""

from __future__ import annotations

from typing import Any

from napari.layers import Labels, Shapes

from ..io.label_volume import new_label_volume
from ._objects_layer import objects_metadata
from ._slicing import layer_shape
from ._views import METADATA_KEY, mark_plugin_layer, plugin_layers
from ._workspace import unwrap

__all__ = ["box_layer", "new_target"]


def _image_layer(viewer: Any, role: str, image: Any) -> Any:
    for layer in plugin_layers(viewer, role):
        if layer.metadata[METADATA_KEY].get("image") == image.unique_id:
            return layer
    return None


class _KeepActive:
    """Give the focus back to the layer that had it (adding or removing a layer takes it)."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer

    def __enter__(self) -> None:
        self.active = self.viewer.layers.selection.active

    def __exit__(self, *_: Any) -> None:
        if self.active is not None and self.active in self.viewer.layers:
            self.viewer.layers.selection.active = self.active


def box_layer(viewer: Any, image: Any, create: bool = False) -> Shapes | None:
    """The Shapes layer of ``image``'s drawn boxes (made when ``create``), or ``None``."""
    if image is None:
        return None
    layer = _image_layer(viewer, "boxes", image)
    if layer is None and create:
        layer = viewer.add_shapes(ndim=image.ndim, name=f"{image.name} boxes", scale=image.scale,
                                  translate=image.translate, edge_color="yellow", face_color="transparent",
                                  edge_width=2)
        layer = mark_plugin_layer(unwrap(layer), "boxes", image=image.unique_id)
    return layer


def new_target(viewer: Any, image: Any) -> Labels:
    """A new, empty ``<image> propagated`` Labels layer on the image's grid: the image's objects layer."""
    with _KeepActive(viewer):
        return unwrap(viewer.add_labels(new_label_volume(layer_shape(image)), name=f"{image.name} propagated",
                                        scale=image.scale, translate=image.translate,
                                        metadata=objects_metadata(image)))
