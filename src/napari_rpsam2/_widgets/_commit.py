"""Where the click dock commits: the chosen Labels layer, or a new one made for the image and then kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..io.label_volume import new_label_volume
from ._layer_picker import LayerPicker
from ._objects_layer import objects_metadata
from ._slicing import layer_shape
from ._workspace import unwrap

if TYPE_CHECKING:
    import napari

__all__ = ["commit_target"]


def commit_target(viewer: "napari.viewer.Viewer", picker: LayerPicker, image: Any, below: Any = None) -> Any:
    """The picker's Labels layer; with "(new Labels layer)" a new one on ``image``'s grid, chosen in the picker.

    The new layer is the real layer (not napari's public-only proxy), so the
    picker finds it and the next commit goes into the same layer.  It is put
    just under the layer ``below`` (the preview), so it never hides the next preview.  It is marked as the
    image's objects layer, so the Propagate and one-shot docks write into it by default.
    """
    target = picker.layer()
    if target is None:
        target = unwrap(viewer.add_labels(new_label_volume(layer_shape(image)), name=f"{image.name} objects",
                                          scale=image.scale, translate=image.translate,
                                          metadata=objects_metadata(image)))
        picker.set_layer(target)
        if below is not None and below in viewer.layers:
            viewer.layers.move(viewer.layers.index(target), viewer.layers.index(below))
    return target
