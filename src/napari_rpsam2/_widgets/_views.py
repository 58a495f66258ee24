"""Pieces the dock views share: marking the plugin's own layers, scrolling panels, dock width.

Plugin-made layers carry ``layer.metadata["napari_rpsam2"] = {"role": ...}``
(roles used: ``"preview"``, ``"clicks"``, ``"heatmap"``); layer pickers leave
them out with :func:`is_plugin_layer`.  No layer name is assumed anywhere.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDockWidget, QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

__all__ = ["METADATA_KEY", "NO_MODEL", "DOCK_MAX_WIDTH", "mark_plugin_layer", "plugin_role", "is_plugin_layer",
           "plugin_layers", "scrolling_dock", "StatusLabel"]

METADATA_KEY = "napari_rpsam2"
"""``layer.metadata`` key of the layers this plugin makes: ``{"role": ..., ...}``."""

NO_MODEL = ("No model: load one in the click dock's Model box (Plugins ▸ RP-SAM2 ▸ Click segmentation; "
            "weights 'random' work offline).")
"""What a dock that needs the viewer's model says when none is loaded."""

DOCK_MAX_WIDTH = 420
"""Widest a dock may be, so three docks and the canvas fit a 1280×800 screen."""


def mark_plugin_layer(layer: Any, role: str, **info: Any) -> Any:
    """Tag ``layer`` as made by this plugin in ``role`` (with extra ``info``); returns it."""
    layer.metadata[METADATA_KEY] = {"role": role, **info}
    return layer


def plugin_role(layer: Any) -> str | None:
    """The role of a plugin-made layer, or ``None`` for the user's own layers."""
    meta = getattr(layer, "metadata", None) or {}
    entry = meta.get(METADATA_KEY)
    return entry.get("role") if isinstance(entry, dict) else None


def is_plugin_layer(layer: Any) -> bool:
    """Whether this plugin made ``layer`` (preview, clicks, heatmaps …)."""
    return plugin_role(layer) is not None


def plugin_layers(viewer: Any, role: str) -> list[Any]:
    """The viewer's layers of one plugin role, in layer-list order."""
    return [layer for layer in viewer.layers if plugin_role(layer) == role]


class _DockScroll(QScrollArea):
    """A vertical scroll area never narrower than its panel plus the scroll bar (nothing is cut off).

    napari fixes a dock's minimum width when the dock is added, before the
    panel has its final fonts and style; once shown, the dock's minimum grows
    if the panel needs more room.
    """

    def minimumSizeHint(self) -> Any:  # noqa: N802 (Qt name)
        hint = super().minimumSizeHint()
        panel = self.widget()
        if panel is not None:
            width = panel.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
            hint.setWidth(min(width + 2 * self.frameWidth(), DOCK_MAX_WIDTH))
        return hint

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        missing = self.minimumSizeHint().width() - self.width()
        host = self.parentWidget()
        while host is not None and not isinstance(host, QDockWidget):
            host = host.parentWidget()
        if missing > 0 and host is not None:
            host.setMinimumWidth(min(host.width() + missing, DOCK_MAX_WIDTH))


def scrolling_dock(dock: QWidget, panel: QWidget) -> None:
    """Put ``panel`` into ``dock`` inside a vertical scroll area, at most :data:`DOCK_MAX_WIDTH` wide."""
    scroll = _DockScroll()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    scroll.setWidget(panel)
    lay = QVBoxLayout(dock)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(scroll)
    dock.setMaximumWidth(DOCK_MAX_WIDTH)
    panel.setMaximumWidth(DOCK_MAX_WIDTH)


class DockView(QWidget):
    """A dock's outer widget that runs :meth:`cleanup` once when the dock goes away.

    napari's dock close button takes the widget out of its dock
    (``setParent(None)``) without a close event; a window close deletes it.
    Both end here, as does an explicit :meth:`close`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._docked = False
        self._cleaned = False

    def cleanup(self) -> None:
        """Stop jobs and disconnect from the viewer and the workspace (override)."""

    def _cleanup_once(self) -> None:
        if not self._cleaned:
            self._cleaned = True
            self.cleanup()

    def event(self, ev: Any) -> bool:  # noqa: D401 - Qt override
        from qtpy.QtCore import QEvent

        if ev.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:  # taken out of its dock: the dock was closed
                self._cleanup_once()
        return super().event(ev)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        self._cleanup_once()
        super().closeEvent(event)


class StatusLabel(QLabel):
    """A word-wrapped status line: info in the palette colour, errors in red."""

    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)

    def info(self, text: str) -> None:
        """Show a normal message."""
        self.setStyleSheet("")
        self.setText(text)

    def error(self, text: str) -> None:
        """Show what went wrong and what to do."""
        self.setStyleSheet("color: #ff6b6b;")
        self.setText(text)
