"""Real user input for GUI tests: mouse clicks on napari's canvas and key presses.

Events go to the canvas's native Qt widget through ``QTest``, as a person's
mouse and keyboard would send them, so napari's own handling (add mode,
selection, ``feature_defaults``, key bindings) runs exactly as in use.

Import it from a test module next to it: ``from gui_input import click_canvas``.

API (stable, shared by the GUI tests):

- ``show_viewer(qtbot, viewer)`` — show the window and wait until the canvas is exposed.
- ``data_to_canvas(viewer, layer, data_rc)`` — canvas pixel ``(x, y)`` of a layer's data point.
- ``click_canvas(qtbot, viewer, layer, data_rc, modifiers=Qt.NoModifier, button=Qt.LeftButton)``
  — press and release (no movement: napari sees a click) at that data point.
- ``drag_canvas(qtbot, viewer, layer, start_rc, end_rc)`` — press, move with the button held, release
  (e.g. a rectangle in a Shapes layer's add-rectangle mode).
- ``press_key(qtbot, viewer, key, modifiers=Qt.NoModifier)`` — a key press on the canvas
  (``key`` a ``Qt.Key`` or one character, e.g. ``"C"``).
- ``click_button(qtbot, button)`` — a left click on a Qt button.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

__all__ = ["show_viewer", "canvas_widget", "data_to_canvas", "click_canvas", "drag_canvas", "press_key",
           "click_button"]


def canvas_widget(viewer: Any) -> Any:
    """The Qt widget napari's vispy canvas draws into (it receives mouse and key events)."""
    return viewer.window._qt_viewer.canvas.native


def show_viewer(qtbot: Any, viewer: Any) -> None:
    """Show the viewer's window (idempotent) and wait until its canvas is on screen."""
    window = viewer.window._qt_window
    if not window.isVisible():
        window.show()
    qtbot.waitExposed(canvas_widget(viewer), timeout=10_000)


def _full_data_point(viewer: Any, layer: Any, data_rc: Sequence[float]) -> np.ndarray:
    """A full ``layer.ndim`` data point; a 2-vector ``(row, col)`` takes the slice on screen."""
    point = np.asarray(data_rc, dtype=float)
    if point.size == layer.ndim:
        return point
    if point.size != 2:
        raise ValueError(f"give (row, col) or a {layer.ndim}-d data point, not {tuple(point)}")
    current = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)[: layer.ndim]
    return np.concatenate([np.round(current[:-2]), point])


def data_to_canvas(viewer: Any, layer: Any, data_rc: Sequence[float]) -> tuple[float, float]:
    """Canvas pixel ``(x, y)`` (the widget's logical pixels) of ``layer``'s data point ``data_rc``.

    The last two data axes must be the displayed ones (napari's default 2D view).
    """
    world = np.asarray(layer.data_to_world(_full_data_point(viewer, layer, data_rc)), dtype=float)
    displayed = list(viewer.dims.displayed)
    offset = viewer.dims.ndim - len(world)  # world points of a layer with fewer dims than the viewer
    row, col = (world[d - offset] for d in displayed[-2:])
    transform = viewer.window._qt_viewer.canvas.view.scene.transform
    x, y = transform.map([col, row, 0, 1])[:2]
    return float(x), float(y)


def click_canvas(qtbot: Any, viewer: Any, layer: Any, data_rc: Sequence[float],
                 modifiers: Any = Qt.KeyboardModifier.NoModifier,
                 button: Any = Qt.MouseButton.LeftButton) -> QPoint:
    """Press and release the mouse at a data point of ``layer``, without moving (a click).

    Returns the canvas position used.
    """
    show_viewer(qtbot, viewer)
    widget = canvas_widget(viewer)
    x, y = data_to_canvas(viewer, layer, data_rc)
    pos = QPoint(int(round(x)), int(round(y)))
    if not widget.rect().contains(pos):
        raise ValueError(f"data point {tuple(data_rc)} maps to canvas {pos.x()},{pos.y()}, outside the "
                         f"{widget.width()}×{widget.height()} canvas; reset the view or pick a visible point")
    QTest.mouseMove(widget, pos)
    QTest.mousePress(widget, button, modifiers, pos)
    QTest.mouseRelease(widget, button, modifiers, pos)
    qtbot.wait(1)  # let queued Qt events (layer updates) run
    return pos


def drag_canvas(qtbot: Any, viewer: Any, layer: Any, start_rc: Sequence[float], end_rc: Sequence[float],
                steps: int = 6) -> tuple[QPoint, QPoint]:
    """Press at ``start_rc``, move with the left button held, release at ``end_rc`` (data coordinates)."""
    show_viewer(qtbot, viewer)
    widget = canvas_widget(viewer)
    (x0, y0), (x1, y1) = data_to_canvas(viewer, layer, start_rc), data_to_canvas(viewer, layer, end_rc)
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    mods = Qt.KeyboardModifier.NoModifier

    def send(kind: Any, x: float, y: float, button: Any, buttons: Any) -> None:
        pos = QPointF(x, y)
        QApplication.sendEvent(widget, QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, mods))

    send(QMouseEvent.Type.MouseMove, x0, y0, none, none)
    send(QMouseEvent.Type.MouseButtonPress, x0, y0, left, left)
    for k in range(1, steps + 1):
        send(QMouseEvent.Type.MouseMove, x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps, none, left)
        qtbot.wait(5)
    send(QMouseEvent.Type.MouseButtonRelease, x1, y1, left, none)
    qtbot.wait(10)
    return QPoint(int(x0), int(y0)), QPoint(int(x1), int(y1))


_KEY_NAMES = {"delete": Qt.Key.Key_Delete, "backspace": Qt.Key.Key_Backspace, "escape": Qt.Key.Key_Escape}


def press_key(qtbot: Any, viewer: Any, key: Any, modifiers: Any = Qt.KeyboardModifier.NoModifier) -> None:
    """Press and release ``key`` with ``modifiers`` on the canvas (where napari reads its shortcuts)."""
    show_viewer(qtbot, viewer)
    widget = canvas_widget(viewer)
    if isinstance(key, str):
        key = _KEY_NAMES.get(key.lower()) or getattr(Qt.Key, f"Key_{key.upper()}")
    widget.setFocus()
    QTest.keyClick(widget, key, modifiers)
    qtbot.wait(1)


def click_button(qtbot: Any, button: Any) -> None:
    """Left-click a Qt button as a person would (it must be enabled to react)."""
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def pick_paint_brush(qtbot: Any, viewer: Any, layer: Any, label: int, size: int | None = None) -> None:
    """Select Labels ``layer``, press its paint button and pick ``label`` (and brush ``size``)."""
    viewer.layers.selection.active = layer
    click_button(qtbot, viewer.window._qt_viewer.controls.widgets[layer].paint_button)
    layer.selected_label = label
    if size is not None:
        layer.brush_size = size


def paint_stroke(qtbot: Any, viewer: Any, layer: Any, start_rc: Sequence[float], end_rc: Sequence[float],
                 label: int, size: int = 5) -> None:
    """A brush stroke with napari's own paint tool: its paint button, then a drag on the canvas."""
    pick_paint_brush(qtbot, viewer, layer, label, size)
    drag_canvas(qtbot, viewer, layer, start_rc, end_rc)
