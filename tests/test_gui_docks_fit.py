"""Every dock of the plugin fits a 1280×800 window without cutting text, alone or all six stacked.

The docks are opened from the Plugins ▸ RP-SAM2 menu and a 'random' model is loaded with the click
dock's Load model button, so the status lines are at their longest.
"""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from gui_forms import click, type_into
from gui_input import show_viewer
from qtpy.QtWidgets import QCheckBox, QLabel, QPushButton, QScrollArea

from napari_rpsam2._widgets._workspace import workspace_for
from napari_rpsam2.sample_data import make_instrument_stack

ENTRIES = ("Click segmentation", "Click-sensitivity heatmap", "Train shift block", "Propagate through stack",
           "One-shot segmentation", "Automatic segmentation")


def _open_from_menu(qtbot, viewer, entry: str):
    """Plugins ▸ RP-SAM2 ▸ ``entry``; returns (the dock widget, the plugin's widget)."""
    actions = viewer.window._qt_window.menuBar().actions()
    for name in ("Plugins", "RP-SAM2", entry):
        found = [a for a in actions if a.text().replace("&", "").startswith(name)]
        assert found, f"no menu entry {name!r}: {[a.text() for a in actions]}"
        action = found[0]
        actions = action.menu().actions() if action.menu() else []
    before = set(viewer.window.dock_widgets)
    action.trigger()
    qtbot.wait(50)
    (new,) = set(viewer.window.dock_widgets) - before
    widget = viewer.window.dock_widgets[new]
    return widget.parent(), widget


def _cut(dock_widget) -> list[str]:
    """What of the dock's visible text (its title included) is cut at its right edge, or elided."""
    scroll = dock_widget.findChild(QScrollArea)
    viewport = scroll.viewport()
    problems = []
    title = dock_widget.title.title  # napari's title bar: "<display name> (RP-SAM2)"
    if title.sizeHint().width() > title.width():
        problems.append(f"title {title.text()!r} needs {title.sizeHint().width()} px, has {title.width()}")
    for kind in (QLabel, QPushButton, QCheckBox):
        for w in scroll.widget().findChildren(kind):
            if not w.isVisible() or not w.text():
                continue
            right = w.mapTo(viewport, w.rect().topRight()).x()
            if right >= viewport.width():
                problems.append(f"{w.text()!r} ends at {right} > {viewport.width()}")
            wraps = isinstance(w, QLabel) and w.wordWrap()
            if not wraps and w.sizeHint().width() > w.width():
                problems.append(f"{w.text()!r} needs {w.sizeHint().width()} px, has {w.width()}")
    return problems


def test_every_dock_fits_1280_by_800_alone_and_stacked(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 800)
    show_viewer(qtbot, viewer)
    image, _ = make_instrument_stack(3)
    viewer.add_image(image, name="frames", rgb=True)

    # the click dock alone loads the model: its status line is then the longest it gets
    dock_widget, click_dock = _open_from_menu(qtbot, viewer, ENTRIES[0])
    type_into(qtbot, click_dock.settings.weights, "random")
    click(qtbot, click_dock.settings.load_button)
    qtbot.waitUntil(lambda: workspace_for(viewer).model is not None, timeout=120_000)
    qtbot.waitUntil(lambda: "Loaded" in click_dock.settings.status.text(), timeout=10_000)
    for entry in ENTRIES:
        if entry != ENTRIES[0]:
            dock_widget, _ = _open_from_menu(qtbot, viewer, entry)
        qtbot.wait(200)
        assert window.width() <= 1280, f"{entry}: the window grew to {window.width()} px"
        assert not _cut(dock_widget), f"{entry} alone: {_cut(dock_widget)}"
        click(qtbot, dock_widget.title.close_button)
        qtbot.wait(50)

    docks = {entry: _open_from_menu(qtbot, viewer, entry)[0] for entry in ENTRIES}
    qtbot.wait(300)
    assert window.width() <= 1280, f"the window grew to {window.width()} px"
    cut = {entry: _cut(dw) for entry, dw in docks.items() if _cut(dw)}
    assert not cut, f"stacked: {cut}"
    widths = {dw.width() for dw in docks.values()}
    assert len(widths) == 1, f"the docks are not stacked in one column: {widths}"
