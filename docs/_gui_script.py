"""Real input for the screenshot scripts beside this file: waiting, canvas clicks and drags, keys, forms.

The scripts run as ``xvfb-run -a python docs/make_….py``; Python puts this
folder first on the import path, so they import these helpers by name.
"""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QAbstractSpinBox, QApplication, QLineEdit


def settle(seconds: float = 0.4) -> None:
    """Let Qt process events for a while (layouts, repaints)."""
    end = time.time() + seconds
    while time.time() < end:
        QApplication.instance().processEvents()
        time.sleep(0.01)


def wait(cond, timeout: float = 900) -> None:
    """Process events until ``cond()`` holds (TimeoutError after ``timeout`` s), then settle."""
    end = time.time() + timeout
    while not cond():
        QApplication.instance().processEvents()
        time.sleep(0.02)
        if time.time() > end:
            raise TimeoutError
    settle()


def canvas_pos(viewer, layer, data) -> tuple[float, float]:
    """Canvas pixel of a point given in ``layer``'s data coordinates (row, col)."""
    world = layer.data_to_world(np.asarray(data, float))
    x, y = viewer.window._qt_viewer.canvas.view.scene.transform.map([world[-1], world[-2], 0, 1])[:2]
    return float(x), float(y)


def click(viewer, layer, data, shift: bool = False) -> None:
    """Press and release the left button on the canvas at ``data`` (Shift held if asked)."""
    x, y = canvas_pos(viewer, layer, data)
    mod = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
    widget, pos = viewer.window._qt_viewer.canvas.native, QPoint(round(x), round(y))
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, mod, pos)
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, mod, pos)


def drag(viewer, layer, start, end, steps: int = 8) -> None:
    """Press at ``start``, move with the button held, release at ``end`` (data coordinates)."""
    widget = viewer.window._qt_viewer.canvas.native
    (x0, y0), (x1, y1) = canvas_pos(viewer, layer, start), canvas_pos(viewer, layer, end)
    left, none, mods = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier

    def send(kind, x, y, button, buttons):
        pos = QPointF(x, y)
        QApplication.sendEvent(widget, QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, mods))

    send(QMouseEvent.Type.MouseMove, x0, y0, none, none)
    send(QMouseEvent.Type.MouseButtonPress, x0, y0, left, left)
    for k in range(1, steps + 1):
        send(QMouseEvent.Type.MouseMove, x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps, none, left)
        QApplication.instance().processEvents()
    send(QMouseEvent.Type.MouseButtonRelease, x1, y1, left, none)


def key(viewer, k) -> None:
    """Press a key on the canvas."""
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QTest.keyClick(canvas, k)
    settle()


def type_into(field, text: str) -> None:
    """Select a field's text (Ctrl+A), type ``text`` and press Enter (Qt or magicgui field)."""
    native = getattr(field, "native", field)
    if not isinstance(native, (QLineEdit, QAbstractSpinBox)):
        native = native.findChild(QLineEdit) or native.findChild(QAbstractSpinBox)
    native.setFocus()
    QTest.keyClick(native, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClicks(native, text)
    QTest.keyClick(native, Qt.Key.Key_Return)


def press(button) -> None:
    """Left-click a button."""
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)


def grab(viewer, path) -> None:
    """Save the whole window as a PNG."""
    settle(1.0)
    viewer.window._qt_window.grab().save(str(path))
    print("wrote", path, flush=True)
