"""The generator's boxes on a napari Shapes layer, and the reviewed boxes read back from it.

One rectangle per region, drawn around the region's pixels (half a pixel
outside their centres); the class is the shape's ``class`` feature, shown as
its text and its edge colour.  A person moves, resizes, deletes or adds
rectangles with napari's own Shapes tools; :func:`reviewed_boxes` reads
whatever is there when Segment boxes is pressed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..app.autoseg_review import BoxProposal
from ._views import mark_plugin_layer, plugin_layers

__all__ = ["BOXES_ROLE", "show_boxes", "reviewed_boxes", "boxes_layer"]

BOXES_ROLE = "autoseg-boxes"
_COLOURS = ("#ffd54f", "#4fc3f7", "#ff8a65", "#aed581", "#ba68c8", "#f06292", "#4db6ac", "#e0e0e0")


def _colour(class_index: int) -> str:
    return _COLOURS[(class_index - 1) % len(_COLOURS)]


def _rectangle(b: BoxProposal, ndim: int) -> np.ndarray:
    top, left, bottom, right = (float(v) for v in b.box)
    corners = np.array([[top - 0.5, left - 0.5], [top - 0.5, right + 0.5], [bottom + 0.5, right + 0.5],
                        [bottom + 0.5, left - 0.5]])
    if ndim == 2:
        return corners
    return np.concatenate([np.full((4, 1), float(b.slice_index)), corners], axis=1)


def boxes_layer(viewer: Any, image: Any) -> Any:
    """The boxes layer made for ``image`` (``None`` when there is none yet)."""
    for layer in plugin_layers(viewer, BOXES_ROLE):
        if layer.metadata["napari_rpsam2"].get("image") == str(image.unique_id):
            return layer
    return None


def show_boxes(viewer: Any, image: Any, boxes: list[BoxProposal], classes: list[str],
               slices: list[int]) -> Any:
    """Put ``boxes`` on the image's boxes layer, replacing the boxes it had on ``slices``; returns the layer."""
    ndim = 2 if image.ndim == 2 else 3  # napari's ndim leaves out an RGB image's channel axis
    layer = boxes_layer(viewer, image)
    keep_data, keep_classes, keep_scores = [], [], []
    if layer is not None:
        for shape, cls, score in zip(layer.data, layer.features["class"], layer.features["score"]):
            z = int(round(float(shape[0, 0]))) if ndim == 3 else 0
            if ndim == 3 and z not in slices:
                keep_data.append(np.asarray(shape))
                keep_classes.append(str(cls))
                keep_scores.append(float(score))
    data = keep_data + [_rectangle(b, ndim) for b in boxes]
    names = keep_classes + [b.class_name for b in boxes]
    scores = keep_scores + [float(b.score) for b in boxes]
    colours = [_colour(classes.index(n) + 1 if n in classes else 1) for n in names]
    features = {"class": np.array(names, dtype=object), "score": np.array(scores, dtype=float)}  # typed when empty
    text = {"string": "{class}", "size": 9, "color": "white", "anchor": "upper_left"}
    if layer is None:
        layer = viewer.add_shapes(data or None, ndim=ndim, shape_type="rectangle", edge_width=1.5,
                                  edge_color=colours or "#ffd54f", face_color="transparent", features=features,
                                  text=text, name=f"{image.name} boxes", scale=image.scale[-ndim:],
                                  translate=image.translate[-ndim:])
        mark_plugin_layer(layer, BOXES_ROLE, image=str(image.unique_id))
    else:
        layer.selected_data = set()
        layer.data = []
        layer.features = {"class": np.array([], dtype=object), "score": np.array([], dtype=float)}
        if data:
            layer.add_rectangles(data, edge_color=colours, face_color="transparent")
            layer.features = features
        layer.text = text
    layer.feature_defaults = {"class": classes[0] if classes else "object", "score": 1.0}
    layer.current_edge_color = _colour(1)
    layer.current_face_color = "transparent"
    return layer


def reviewed_boxes(layer: Any, classes: list[str]) -> list[BoxProposal]:
    """The rectangles on ``layer`` now, as boxes (pixel centres); a class the generator does not know is refused."""
    out = []
    ndim = layer.ndim
    for shape, kind, cls, score in zip(layer.data, layer.shape_type, layer.features["class"],
                                       layer.features["score"]):
        if kind not in ("rectangle", "polygon"):
            continue
        pts = np.asarray(shape, float)
        rc = pts[:, -2:]
        z = int(round(float(pts[0, 0]))) if ndim == 3 else 0
        (top, left), (bottom, right) = rc.min(axis=0) + 0.5, rc.max(axis=0) - 0.5
        if bottom < top or right < left:
            continue  # thinner than a pixel
        name = str(cls)
        if name not in classes:
            raise ValueError(f"a box on slice {z} has class '{name}', which the generator does not know "
                             f"({', '.join(classes)}); change its class or delete it")
        out.append(BoxProposal(z, classes.index(name) + 1, name, np.array([top, left, bottom, right]),
                               float(score) if score == score else 1.0))
    return out
