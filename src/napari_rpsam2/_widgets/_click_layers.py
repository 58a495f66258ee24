"""The click dock's layers of one image (clicks, refined clicks, shift arrows, preview), mirroring its session.

The layers are marked in their ``metadata`` with their role and the image's
``unique_id``, so a reopened dock finds and reuses them (no hard-coded names)
and pickers can leave them out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Points, Vectors
from napari.utils.colormaps import DirectLabelColormap

from ..app.click_session import Click, ClickSession, Preview
from ._logic import NEGATIVE, POSITIVE, vectors_from
from ._slicing import layer_shape
from ._views import METADATA_KEY

if TYPE_CHECKING:
    import napari

__all__ = ["ClickLayers", "ROLES", "PREVIEW_COLOR", "CLICK_COLORS"]

ROLES = ("preview", "arrows", "refined", "prompts")
PREVIEW_COLOR = (0.0, 1.0, 1.0, 1.0)
"""Bright cyan: stands out on reddish surgical frames and on grey images."""
PREVIEW_OPACITY = 0.6
CLICK_COLORS = {POSITIVE: (0.2, 0.9, 0.2, 1.0), NEGATIVE: (1.0, 0.25, 0.25, 1.0)}


def _make(role: str, image: Any) -> Any:
    """A new layer for ``role`` on ``image``'s grid."""
    nd, shape = image.ndim, layer_shape(image)
    geo = {"scale": image.scale, "translate": image.translate,
           "metadata": {METADATA_KEY: {"role": role, "image": image.unique_id}}}
    size = max(6.0, 0.035 * min(shape[-2:]))
    if role == "preview":  # one plane, moved to the previewed slice: memory does not grow with the stack
        cmap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: PREVIEW_COLOR})
        plane = (1,) * (len(shape) - 2) + tuple(shape[-2:])
        return Labels(np.zeros(plane, np.uint8), name=f"{image.name} preview", opacity=PREVIEW_OPACITY,
                      colormap=cmap, **geo)
    if role == "arrows":
        return Vectors(np.zeros((0, 2, nd)), ndim=nd, name=f"{image.name} click shifts", edge_color="yellow",
                       edge_width=max(1.0, size / 4), vector_style="arrow", **geo)
    if role == "refined":
        return Points(np.zeros((0, nd)), ndim=nd, name=f"{image.name} refined clicks", size=size,
                      face_color="yellow", border_color="black", symbol="diamond", **geo)
    return Points(np.zeros((0, nd)), ndim=nd, name=f"{image.name} clicks", size=size,
                  features={"label": np.zeros(0, dtype=object)}, feature_defaults={"label": POSITIVE},
                  border_color="white", **geo)


def _role_of(layer: Any, image: Any) -> str | None:
    mark = getattr(layer, "metadata", {}).get(METADATA_KEY)
    if isinstance(mark, dict) and mark.get("image") == image.unique_id:
        return mark.get("role")
    return None


class ClickLayers:
    """Find or make the four layers of ``image`` in ``viewer`` and mirror a session into them."""

    def __init__(self, viewer: "napari.viewer.Viewer", image: Any) -> None:
        self.viewer = viewer
        self.image = image
        self.layers: dict[str, Any] = {}
        self.mirroring = False
        self._shown_index: Any = Ellipsis  # a reused preview layer may still show an old mask
        self.ensure()

    def ensure(self) -> bool:
        """(Re)make missing layers, reusing the image's existing ones; True when one was made."""
        existing = {_role_of(ly, self.image): ly for ly in self.viewer.layers}
        made = False
        for role in ROLES:
            layer = existing.get(role)
            if layer is None:
                layer = _make(role, self.image)
                self.viewer.add_layer(layer)
                made = True
                if role == "preview":
                    self._shown_index = Ellipsis
            self.layers[role] = layer
        self.prompts.mode = "pan_zoom"  # canvas clicks become session clicks; napari never adds points itself
        return made

    def alive(self) -> bool:
        """Whether every layer is still in the viewer."""
        return all(ly in self.viewer.layers for ly in self.layers.values())

    @property
    def prompts(self) -> Points:
        """The clicks layer."""
        return self.layers["prompts"]

    @property
    def preview(self) -> Labels:
        """The preview Labels layer."""
        return self.layers["preview"]

    def activate(self) -> None:
        """Make the clicks layer the active one, so the next canvas click reaches it."""
        self.viewer.layers.selection.active = self.prompts

    # ------------------------------------------------------------------ session -> layers
    def show_clicks(self, session: ClickSession) -> None:
        """Put every slice's clicks into the clicks layer, coloured by polarity."""
        rows, labels = [], []
        for index, clicks in session.slices().items():
            for c in clicks:
                rows.append([*index, c.row, c.col])
                labels.append(POSITIVE if c.positive else NEGATIVE)
        layer = self.prompts
        self.mirroring = True
        try:
            layer.selected_data = set()
            layer.data = np.array(rows, dtype=float).reshape(-1, layer.ndim)
            layer.features = {"label": np.array(labels, dtype=object)}
            layer.feature_defaults = {"label": POSITIVE}  # napari copies a selected point's features here
            if labels:
                layer.face_color = np.array([CLICK_COLORS[v] for v in labels])
        finally:
            self.mirroring = False

    def read_clicks(self) -> list[tuple[tuple[int, ...], Click]]:
        """The clicks layer's points in layer order, each with its slice (after the person edited the layer)."""
        layer = self.prompts
        data = np.asarray(layer.data, dtype=float).reshape(-1, layer.ndim)
        labels = [str(v) for v in layer.features["label"]] if "label" in layer.features else []
        labels += [POSITIVE] * (len(data) - len(labels))
        return [(tuple(int(round(v)) for v in point[:-2]), Click(float(point[-2]), float(point[-1]), label != NEGATIVE))
                for point, label in zip(data, labels)]

    def preview_plane(self) -> tuple[tuple[int, ...], np.ndarray] | None:
        """``(slice index, mask)`` the preview layer shows now, or ``None`` when it shows nothing."""
        if self._shown_index is None or self._shown_index is Ellipsis:
            return None
        data = np.asarray(self.preview.data)
        return self._shown_index, data.reshape(data.shape[-2:]) > 0

    def _move_preview(self, index: tuple[int, ...]) -> None:
        """Place the one-plane preview layer on slice ``index`` of the image."""
        layer, lead = self.preview, len(index)
        if not lead:
            return
        translate = np.array(self.image.translate, dtype=float)
        translate[:lead] += np.asarray(index, float) * np.asarray(self.image.scale, float)[:lead]
        if not np.array_equal(translate, np.asarray(layer.translate, float)):
            layer.translate = translate

    def show_preview(self, preview: Preview | None) -> None:
        """Show the preview mask, its refined clicks and the shift arrows (or nothing)."""
        nd = self.prompts.ndim
        layer = self.preview
        data = np.asarray(layer.data)
        if data.ndim == nd:
            data[...] = 0
        self._shown_index = None
        if preview is None:
            self.layers["refined"].data = np.zeros((0, nd))
            self.layers["arrows"].data = np.zeros((0, 2, nd))
        else:
            res = preview.result
            data.reshape(data.shape[-2:])[...] = res.mask
            self._move_preview(tuple(preview.index))
            self._shown_index = preview.index
            pos = res.labels == 1
            lead = np.broadcast_to(np.asarray(preview.index, float), (int(pos.sum()), len(preview.index)))
            self.layers["refined"].data = np.concatenate([lead, res.points[pos]], axis=1)
            self.layers["arrows"].data = vectors_from(res.clicks[pos], res.points[pos], preview.index)
        # the array was changed in place: re-slice and redraw, without the extent and dims work of `data = `
        layer.refresh(extent=False, thumbnail=False, force=True)
