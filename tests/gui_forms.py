"""Form input as a person gives it: click a button, select a field's text and type over it."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractSpinBox, QLineEdit, QWidget


def click(qtbot: Any, button: QWidget) -> None:
    """Left-click a button in its middle."""
    assert button.isVisible() or button.isVisibleTo(button.window()), "the button is not shown"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def type_into(qtbot: Any, field: Any, text: str) -> None:
    """Select all of a field's text (Ctrl+A) and type ``text``, then Enter.

    ``field`` is a Qt line edit or spin box, or a magicgui widget holding one.
    """
    native = getattr(field, "native", field)
    if not isinstance(native, (QLineEdit, QAbstractSpinBox)):
        native = native.findChild(QLineEdit) or native.findChild(QAbstractSpinBox)
    native.setFocus()
    qtbot.keyClick(native, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(native, text)
    qtbot.keyClick(native, Qt.Key.Key_Return)


def tick(qtbot: Any, box: Any) -> None:
    """Click a check box on its indicator (a magicgui CheckBox or a QCheckBox)."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QStyle, QStyleOptionButton

    native = getattr(box, "native", box)
    option = QStyleOptionButton()
    native.initStyleOption(option)
    rect = native.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, native)
    qtbot.mouseClick(native, Qt.MouseButton.LeftButton, pos=rect.center() if rect.isValid() else QPoint(8, 8))


def choose(qtbot: Any, combo: Any, text: str) -> None:
    """Pick ``text`` in a combo box with the keyboard (Home, then Down until it shows)."""
    native = getattr(combo, "native", combo)
    native.setFocus()
    qtbot.keyClick(native, Qt.Key.Key_Home)
    for _ in range(native.count()):
        if native.currentText() == text:
            return
        qtbot.keyClick(native, Qt.Key.Key_Down)
    offered = [native.itemText(i) for i in range(native.count())]
    assert native.currentText() == text, f"{text!r} is not offered: {offered}"


def type_into_cell(qtbot: Any, table: Any, row: int, column: int, text: str) -> None:
    """Click a table cell, press F2 to edit it, select its text (Ctrl+A), delete it, type ``text``, then Enter."""
    rect = table.visualItemRect(table.item(row, column))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.keyClick(table, Qt.Key.Key_F2)
    editors = [e for e in table.viewport().findChildren(QLineEdit) if e.isVisible()]
    editor = editors[-1] if editors else None  # the delegate's editor (focus may be elsewhere under Xvfb)
    assert isinstance(editor, QLineEdit), f"the cell opened no text editor ({type(editor).__name__})"
    qtbot.keyClick(editor, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(editor, Qt.Key.Key_Backspace)  # ("" clears the cell)
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.wait(10)  # the closed editor is deleted
