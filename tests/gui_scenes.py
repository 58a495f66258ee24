"""Scenes the click-dock GUI tests share: an image with the click dock open, its clicks layer, a pixel inside an object.

Setting up the scene (opening an image, giving the viewer a random-weights
model) is done directly; everything a test does after that is real input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["inside", "clicks_layer", "open_click_dock"]


def inside(labels: np.ndarray, object_id: int) -> tuple[float, float]:
    """A pixel well inside one object (the farthest from its border)."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(labels == object_id)
    return tuple(float(v) for v in np.unravel_index(np.argmax(dist), dist.shape))


def clicks_layer(viewer: Any) -> Any:
    """The click dock's clicks layer (the only Points layer with a ``label`` feature)."""
    from napari.layers import Points

    (layer,) = [ly for ly in viewer.layers if isinstance(ly, Points) and "label" in ly.features]
    return layer


def open_click_dock(qtbot: Any, make_napari_viewer: Any, model: Any, image: np.ndarray, name: str = "frame",
                    **kwargs: Any) -> tuple[Any, Any]:
    """A shown 1280×800 viewer with ``image`` open, a random-weights model and the click dock."""
    from napari_rpsam2 import RPSAM2
    from napari_rpsam2._widgets._workspace import workspace_for

    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name=name, **kwargs)
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
    viewer.window._qt_window.resize(1280, 800)
    qtbot.wait(10)
    viewer.reset_view()
    return viewer, dock
