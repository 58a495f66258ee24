"""Real input for the screenshot scripts beside this file, through the GUI tests' own helpers.

The scripts run as ``xvfb-run -a python docs/make_….py``; Python puts this
folder first on the import path, so they import these functions by name.
Clicks, drags, keys and typing go through ``tests/gui_input.py`` and
``tests/gui_forms.py`` (the helpers the GUI tests use), driven here without
pytest-qt by a small stand-in for its ``qtbot``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import gui_forms  # noqa: E402
import gui_input  # noqa: E402


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


class _Bot:
    """The part of pytest-qt's ``qtbot`` that the test helpers use."""

    keyClick = staticmethod(QTest.keyClick)  # noqa: N815 (Qt's names)
    keyClicks = staticmethod(QTest.keyClicks)  # noqa: N815
    mouseClick = staticmethod(QTest.mouseClick)  # noqa: N815

    @staticmethod
    def wait(ms: int) -> None:
        settle(ms / 1000)

    @staticmethod
    def waitExposed(widget, timeout: int = 10_000) -> None:  # noqa: N802
        wait(widget.isVisible, timeout / 1000)


BOT = _Bot()


def click(viewer, layer, data, shift: bool = False) -> None:
    """Press and release the left button on the canvas at ``data`` (Shift held if asked)."""
    mods = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
    gui_input.click_canvas(BOT, viewer, layer, data, modifiers=mods)


def drag(viewer, layer, start, end) -> None:
    """Press at ``start``, move with the button held, release at ``end`` (data coordinates)."""
    gui_input.drag_canvas(BOT, viewer, layer, start, end)


def key(viewer, k) -> None:
    """Press a key on the canvas."""
    gui_input.press_key(BOT, viewer, k)
    settle()


def type_into(field, text: str) -> None:
    """Select a field's text (Ctrl+A), type ``text`` and press Enter (Qt or magicgui field)."""
    gui_forms.type_into(BOT, field, text)


def press(button) -> None:
    """Left-click a button."""
    gui_input.click_button(BOT, button)


def grab(viewer, path) -> None:
    """Save the whole window as a PNG."""
    settle(1.0)
    viewer.window._qt_window.grab().save(str(path))
    print("wrote", path, flush=True)
