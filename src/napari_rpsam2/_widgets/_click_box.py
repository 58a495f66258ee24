"""The click dock's box prompt: one rectangle per slice, drawn on the image's box layer.

The box layer (a Shapes layer marked ``{"role": "click box", "image":
<unique_id>}``) is made the first time the person asks to draw a box.  A
rectangle dragged on it becomes the session's box of that slice (SAM2 takes
it together with the slice's clicks); a second rectangle on the same slice
replaces the first; deleting it with napari's tools removes the box, and
deleting the layer removes every box of the image.  After a
rectangle is drawn the clicks layer is active again, so the next canvas click
is a click.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..app.click_session import ClickSession
from ._propagate_prompts import rectangle_on_slice
from ._slicing import layer_shape
from ._views import METADATA_KEY, mark_plugin_layer, plugin_layers
from ._workspace import unwrap

if TYPE_CHECKING:
    import napari

__all__ = ["BoxInput", "ROLE"]

ROLE = "click box"


class BoxInput:
    """Mirrors a session's boxes into the image's box layer and reads the rectangles drawn on it.

    Parameters
    ----------
    viewer, image
        The viewer and the image layer the session belongs to.
    session : ClickSession
    on_drawn : callable
        Called after the person finished a rectangle (the dock goes back to clicking).
    on_error : callable
        Shows a message.
    """

    def __init__(self, viewer: "napari.viewer.Viewer", image: Any, session: ClickSession,
                 on_drawn: Callable[[], None], on_error: Callable[[str], None]) -> None:
        self.viewer, self.image, self.session = viewer, image, session
        self._on_drawn, self._on_error = on_drawn, on_error
        self.mirroring = False
        self.layer: Any = None
        found = [ly for ly in plugin_layers(viewer, ROLE) if ly.metadata[METADATA_KEY].get("image") == image.unique_id]
        if found:
            self._adopt(found[0])
        elif session.boxes():  # boxes kept while the dock was closed, their layer deleted meanwhile: show them
            self._make_layer()
        session.events.box_changed.connect(self._mirror)
        viewer.layers.events.removed.connect(self._on_removed)

    def disconnect(self) -> None:
        """Stop listening (the dock closes or shows another image); the layer and the boxes stay."""
        self.session.events.box_changed.disconnect(self._mirror)
        self.viewer.layers.events.removed.disconnect(self._on_removed)
        if self.layer is not None:
            self.layer.events.data.disconnect(self._on_edit)

    def _on_removed(self, event: Any) -> None:
        """The person deleted the box layer: no box may act unseen, so the image's boxes go too."""
        if self.layer is not None and event.value is self.layer:
            self.layer.events.data.disconnect(self._on_edit)
            self.layer = None
            for index in list(self.session.boxes()):
                self.session.set_box(index, None)

    def start_drawing(self) -> Any:
        """Make (or find again) the box layer, make it active in rectangle mode; returns it."""
        if self.layer is None or self.layer not in self.viewer.layers:
            self._make_layer()
        self.viewer.layers.selection.active = self.layer
        self.layer.mode = "add_rectangle"
        return self.layer

    def _make_layer(self) -> None:
        image = self.image
        layer = self.viewer.add_shapes(ndim=len(layer_shape(image)), name=f"{image.name} box",
                                       scale=image.scale, translate=image.translate, edge_color="magenta",
                                       face_color="transparent", edge_width=2)
        self._adopt(mark_plugin_layer(unwrap(layer), ROLE, image=image.unique_id))

    def _adopt(self, layer: Any) -> None:
        if self.layer is not None and self.layer is not layer:
            self.layer.events.data.disconnect(self._on_edit)
        self.layer = layer
        layer.events.data.connect(self._on_edit)
        self._mirror()

    def _on_edit(self, event: Any) -> None:
        """The person drew, moved or deleted a rectangle: the last rectangle of each slice is its box."""
        action = str(getattr(event, "action", "changed"))
        if self.mirroring or action.endswith(("adding", "removing", "changing")):
            return
        shape = self.session.shape
        drawn = {}
        for vertices, kind in zip(self.layer.data, self.layer.shape_type):
            index, box = rectangle_on_slice(vertices, shape[-2:])
            if len(index) == len(shape) - 2 and all(0 <= i < n for i, n in zip(index, shape)):
                drawn[index] = box
            else:
                self._on_error(f"A box on slice {index} is outside the image's slices and was not kept.")
        for index in set(drawn) | set(self.session.boxes()):
            self.session.set_box(index, drawn.get(index))
        self._mirror()  # one rectangle per slice, clipped to the image
        if action.endswith("added"):
            self.layer.mode = "pan_zoom"
            self._on_drawn()

    def _mirror(self, *_: Any) -> None:
        """Show the session's boxes, one rectangle per slice."""
        if self.layer is None or self.layer not in self.viewer.layers:
            return
        shapes = []
        for index, (top, left, bottom, right) in self.session.boxes().items():
            corners = [(top, left), (top, right), (bottom, right), (bottom, left)]
            shapes.append((np.array([[*index, r, c] for r, c in corners], dtype=float), "rectangle"))
        self.mirroring = True
        try:
            self.layer.selected_data = set()
            self.layer.data = shapes
        finally:
            self.mirroring = False
