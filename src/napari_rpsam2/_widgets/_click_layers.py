"""The click widget's own layers: clicks, refined clicks, shift arrows, preview."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Points, Vectors

from ._logic import POSITIVE
from ._slicing import layer_shape

if TYPE_CHECKING:
    import napari

__all__ = ["ensure_click_layers", "ROLES"]

ROLES = ("preview", "arrows", "refined", "prompts")


def ensure_click_layers(viewer: "napari.viewer.Viewer", image: Any, old: dict[str, Any] | None,
                        add: Callable[[Any], Any], setup_prompts: Callable[[Points], None]) -> dict[str, Any]:
    """Reuse the layers in ``old`` that are still in the viewer; make the missing ones.

    New layers get the image's scale and translate and a name derived from
    the image's name (napari makes it unique); ``add`` inserts a layer.
    """
    old = old or {}
    nd = image.ndim
    shape = layer_shape(image)
    geo = {"scale": image.scale, "translate": image.translate}
    size = max(4.0, 0.02 * min(shape[-2:]))
    makers = {
        "preview": lambda: Labels(np.zeros(shape, np.uint8), name=f"{image.name} preview", opacity=0.5, **geo),
        "arrows": lambda: Vectors(np.zeros((0, 2, nd)), ndim=nd, name=f"{image.name} click shifts",
                                  edge_color="yellow", edge_width=max(1.0, size / 4), vector_style="arrow", **geo),
        "refined": lambda: Points(np.zeros((0, nd)), ndim=nd, name=f"{image.name} refined clicks", size=size,
                                  face_color="yellow", border_color="black", symbol="diamond", **geo),
        "prompts": lambda: Points(np.zeros((0, nd)), ndim=nd, name=f"{image.name} clicks", size=size,
                                  features={"label": np.zeros(0, dtype=object)}, border_color="white", **geo),
    }
    found: dict[str, Any] = {"image": image}
    for role in ROLES:
        layer = old.get(role)
        if layer is None or layer not in viewer.layers:
            layer = makers[role]()
            if role == "prompts":
                layer.feature_defaults = {"label": POSITIVE}
                setup_prompts(layer)
            add(layer)
            if role == "prompts":
                layer.mode = "add"
        found[role] = layer
    return found
