"""A combo box of the viewer's layers of some types, kept up to date (the docks' layer choosers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QComboBox

from ._views import is_plugin_layer
from ._workspace import unwrap

if TYPE_CHECKING:
    import napari

__all__ = ["LayerPicker"]


class LayerPicker(QComboBox):
    """A combo box of the viewer's layers of some types, kept up to date.

    Layers are stored as item data, so renaming a layer never breaks the
    choice; no layer name is assumed.  The plugin's own layers (see
    :func:`is_plugin_layer`) are never listed.  Layers are compared by the
    object behind napari's public-only proxy, so a layer a dock made through
    its proxy viewer is found.
    """

    def __init__(self, viewer: "napari.viewer.Viewer", layer_types: tuple[type, ...],
                 *, allow_none: str | None = None, exclude: Callable[[Any], bool] | None = None,
                 parent=None) -> None:
        super().__init__(parent)
        self._viewer = unwrap(viewer)
        self._types = layer_types
        self._none = allow_none
        self._exclude = exclude
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        events = self._viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.refresh)
        self.refresh()

    def disconnect_viewer(self) -> None:
        """Stop following the viewer's layer list (the widget is closing)."""
        events = self._viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.disconnect(self.refresh)
        for layer in self._viewer.layers:
            layer.events.name.disconnect(self.refresh)

    def refresh(self, *_: Any) -> None:
        """Rebuild the list, keeping the current choice when it still exists."""
        current = self.layer()
        self.blockSignals(True)
        self.clear()
        if self._none is not None:
            self.addItem(self._none, None)
        for layer in self._viewer.layers:
            if is_plugin_layer(layer) or (self._exclude and self._exclude(layer)):
                continue
            if isinstance(layer, self._types):
                self.addItem(layer.name, layer)
                layer.events.name.disconnect(self.refresh)
                layer.events.name.connect(self.refresh)
        index = self.findData(current) if current is not None else -1
        if index < 0 and current is None and self._none is None and self.count():
            index = 0
        self.setCurrentIndex(max(index, 0) if self.count() else -1)
        self.blockSignals(False)
        if self.layer() is not current:
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self) -> Any:
        """The chosen layer, or ``None``."""
        return self.currentData() if self.count() else None

    def set_layer(self, layer: Any) -> None:
        """Choose ``layer`` (no-op if it is not listed)."""
        index = self.findData(unwrap(layer))
        if index >= 0:
            self.setCurrentIndex(index)
