"""The plugin's objects layer of an image, and the docks' "Write into" default that follows it.

A Labels layer a dock makes for an image (the click dock's ``<image> objects``,
the Propagate dock's ``<image> propagated``, the one-shot dock's ``<image>
one-shot``, the layer restored from the work folder) carries
``metadata[OBJECTS_KEY] = image.unique_id``.  Unlike the plugin's helper layers
(previews, clicks; see :mod:`._views`) it stays listed in the pickers: it holds
the person's objects.  :class:`DefaultTarget` keeps a dock's "Write into" on
that layer until the person picks something else, so a propagation or a
one-shot run lands in the layer the commits went to (and the work folder
keeps); a layer the plugin did not make is written into only when picked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._layer_picker import LayerPicker
from ._workspace import unwrap

__all__ = ["OBJECTS_KEY", "RESTORED_KEY", "DefaultTarget", "objects_layer", "objects_metadata"]

RESTORED_KEY = "napari_rpsam2_workfolder"
"""Metadata of the Labels layer a work folder keeps (restored from it, or first saved): the folder's path."""
OBJECTS_KEY = "napari_rpsam2_objects"
"""Metadata of a Labels layer a dock made for an image's objects: the image's ``unique_id``."""

_NEW = object()  # the person picked "(new Labels layer)"


def objects_metadata(image: Any) -> dict:
    """The metadata that marks a new Labels layer as ``image``'s objects layer."""
    return {OBJECTS_KEY: image.unique_id}


def objects_layer(viewer: Any, image: Any) -> Any:
    """``image``'s objects layer in ``viewer`` (the one its work folder keeps first), or ``None``."""
    if image is None:
        return None
    found = [ly for ly in unwrap(viewer).layers if ly.metadata.get(OBJECTS_KEY) == image.unique_id]
    kept = [ly for ly in found if RESTORED_KEY in ly.metadata]
    return (kept or found or [None])[0]


class DefaultTarget:
    """Keep a "Write into" picker on the image's objects layer until the person picks a layer there.

    With no objects layer the picker stays on its "(new Labels layer)" entry.
    A choice the person makes in the picker (keyboard or mouse) is kept, also
    "(new Labels layer)"; it lapses when the layer picked is deleted.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    picker : LayerPicker
        The dock's "Write into" picker (with a ``None`` entry).
    image : callable
        The image the dock works on now (or ``None``).
    """

    def __init__(self, viewer: Any, picker: LayerPicker, image: Callable[[], Any]) -> None:
        self.viewer, self.picker, self.image = unwrap(viewer), picker, image
        self.picked: Any = None
        picker.activated.connect(self._on_pick)
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed):  # after the picker's own refresh (connected first)
            ev.connect(self.update)
        self.update()

    def _on_pick(self, *_: Any) -> None:
        layer = self.picker.layer()
        self.picked = _NEW if layer is None else layer

    def update(self, *_: Any) -> None:
        """Choose the image's objects layer unless the person picked a layer that is still there."""
        if self.picked is _NEW or (self.picked is not None and self.picked in self.viewer.layers):
            return
        self.picked = None
        current, wanted = self.picker.layer(), objects_layer(self.viewer, self.image())
        others = current is not None and OBJECTS_KEY in current.metadata and current is not wanted
        if wanted is not None and current is None:
            self.picker.set_layer(wanted)
        elif others:  # another image's objects layer: this image's, or a new layer
            if wanted is None:
                self.picker.setCurrentIndex(0)
            else:
                self.picker.set_layer(wanted)

    def disconnect(self) -> None:
        """Stop following the viewer (the dock closed)."""
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed):
            ev.disconnect(self.update)
