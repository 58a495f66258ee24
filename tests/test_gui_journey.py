"""A person's first ten minutes, with real input only: menus, canvas clicks, keys, buttons, typed fields.

Open the sample → dock the click, heatmap and training docks from the Plugins menu → load 'random'
weights → click +, Shift-click −, click + → Commit → next object → Commit → Undo → another slice →
heatmap → one training epoch → use the trained block → close the click dock with its close button and
reopen it.  The committed labels are checked after every step and no exception may reach the excepthook.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari.layers import Labels  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtWidgets import QPushButton  # noqa: E402

from gui_forms import click, type_into  # noqa: E402
from gui_input import click_canvas, press_key, show_viewer  # noqa: E402
from napari_rpsam2._widgets._slicing import SAMPLE_MENU_PATH  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402

SHIFT = Qt.KeyboardModifier.ShiftModifier


def _menu_action(viewer, *path: str):
    """The QAction at a menu path; each name matches the start of the entry's text (``&`` ignored)."""
    actions = viewer.window._qt_window.menuBar().actions()
    for i, name in enumerate(path):
        found = [a for a in actions if a.text().replace("&", "").startswith(name)]
        assert found, f"no menu entry {name!r} under {path[:i]}: {[a.text() for a in actions]}"
        if i == len(path) - 1:
            return found[0]
        actions = found[0].menu().actions()
    raise AssertionError(path)


def _dock_from_menu(qtbot, viewer, entry: str, kind: str):
    """Plugins ▸ RP-SAM2 ▸ ``entry``; returns the dock's widget."""
    _menu_action(viewer, "Plugins", "RP-SAM2", entry).trigger()
    qtbot.wait(50)
    docks = [w for w in viewer.window.dock_widgets.values() if type(w).__name__ == kind]
    assert len(docks) == 1, f"expected one {kind}, found {len(docks)}"
    return docks[0]


def _inside(labels2d: np.ndarray, object_id: int) -> tuple[float, float]:
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(labels2d == object_id)
    return tuple(float(v) for v in np.unravel_index(np.argmax(dist), dist.shape))


def _wait_mask(qtbot, click_dock, timeout=120_000):
    qtbot.waitUntil(lambda: not click_dock.busy and "mask of" in click_dock.status.text(), timeout=timeout)


def _clicks_layer(viewer):
    """The Points layer the person clicks on (the plugin marks its layers with their role)."""
    (layer,) = [ly for ly in viewer.layers if ly.metadata.get("napari_rpsam2", {}).get("role") == "prompts"]
    return layer


def _committed(viewer, sample_labels):
    found = [ly for ly in viewer.layers if isinstance(ly, Labels) and ly is not sample_labels
             and "napari_rpsam2" not in ly.metadata]
    assert len(found) == 1, [ly.name for ly in found]
    return found[0]


@pytest.mark.background_embedding  # the reopened dock embeds the other slices
def test_first_ten_minutes(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    uncaught = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: uncaught.append(exc))
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    show_viewer(qtbot, viewer)

    sample = _menu_action(viewer, *SAMPLE_MENU_PATH)  # the path the docs and the no-image message name
    assert sample.text().replace("&", "") == SAMPLE_MENU_PATH[-1]
    sample.trigger()
    image, sample_labels = viewer.layers["instruments"], viewer.layers["instrument labels"]
    truth = np.asarray(sample_labels.data)
    sample_labels.visible = False
    click_dock = _dock_from_menu(qtbot, viewer, "Click segmentation", "ClickWidget")
    heat_dock = _dock_from_menu(qtbot, viewer, "Click-sensitivity heatmap", "HeatmapWidget")
    train_dock = _dock_from_menu(qtbot, viewer, "Train shift block", "TrainingWidget")
    assert viewer.window._qt_window.width() <= 1280  # three docks and the canvas fit the screen
    viewer.reset_view()

    # the model: 'random' weights, offline
    type_into(qtbot, click_dock.settings.weights, "random")
    click(qtbot, click_dock.settings.load_button)
    qtbot.waitUntil(lambda: workspace_for(viewer).model is not None, timeout=120_000)
    click_dock.precompute_box.setChecked(False)  # keep the test short: slices are embedded on demand

    # slice 0 (napari opens a stack on its middle slice): click +, Shift-click −, click +, Commit
    press_key(qtbot, viewer, Qt.Key.Key_Left)
    assert viewer.dims.current_step[0] == 0
    clicks = _clicks_layer(viewer)
    obj1, obj2 = _inside(truth[0], 1), _inside(truth[0], 2)
    click_canvas(qtbot, viewer, clicks, obj1)
    click_canvas(qtbot, viewer, clicks, (12.0, 12.0), SHIFT)
    click_canvas(qtbot, viewer, clicks, (obj1[0] - 5, obj1[1] + 3))
    assert [str(v) for v in clicks.features["label"]] == ["positive", "negative", "positive"]
    _wait_mask(qtbot, click_dock)
    click(qtbot, click_dock.commit_button)
    target = _committed(viewer, sample_labels)
    first = np.asarray(target.data).copy()
    assert set(np.unique(first[0])) == {0, 1} and not first[1:].any()

    # the next object: a plain click is positive again (no leftover negative polarity), Commit
    click_canvas(qtbot, viewer, clicks, obj2)
    assert [str(v) for v in clicks.features["label"]] == ["positive"]
    _wait_mask(qtbot, click_dock)
    click(qtbot, click_dock.commit_button)
    assert _committed(viewer, sample_labels) is target  # adopted, not a new layer per commit
    data = np.asarray(target.data)
    assert (data[first != 0] == first[first != 0]).all() and (data == 2).any()

    click(qtbot, click_dock.undo_button)  # object 2 goes, object 1 stays exactly
    np.testing.assert_array_equal(np.asarray(target.data), first)

    # another slice
    press_key(qtbot, viewer, Qt.Key.Key_Right)
    assert viewer.dims.current_step[0] == 1
    click_canvas(qtbot, viewer, clicks, _inside(truth[1], 1))
    _wait_mask(qtbot, click_dock)
    click(qtbot, click_dock.commit_button)
    data = np.asarray(target.data)
    np.testing.assert_array_equal(data[0], first[0])
    assert data[1].any()
    kept = data.copy()

    # heatmap of the sample's object 1 on this slice
    heat_dock.labels_picker.set_layer(sample_labels)
    heat_dock.image_picker.set_layer(image)
    type_into(qtbot, heat_dock.object_id, "1")
    type_into(qtbot, heat_dock.stride, "24")
    click(qtbot, heat_dock.run_button)
    qtbot.waitUntil(lambda: not heat_dock.running, timeout=120_000)
    maps = [ly for ly in viewer.layers if ly.metadata.get("napari_rpsam2", {}).get("role") == "heatmap"]
    assert maps and "Dice" in heat_dock.status.text(), heat_dock.status.text()

    # one training epoch on the sample, then the trained block goes to the click dock
    train_dock.image_picker.set_layer(image)
    train_dock.labels_picker.set_layer(sample_labels)
    click(qtbot, train_dock.params_button)
    for field, text in ((train_dock.form.epochs, "1"), (train_dock.form.clicks_per_object, "1"),
                        (train_dock.form.grid_stride, "32"), (train_dock.form.eval_clicks, "1"),
                        (train_dock.out, str(tmp_path / "block.safetensors"))):
        type_into(qtbot, field, text)
    click(qtbot, train_dock.start_button)
    qtbot.waitUntil(lambda: not train_dock.running, timeout=300_000)
    assert train_dock.use_button.isEnabled(), train_dock.status.text()
    click(qtbot, train_dock.use_button)
    qtbot.waitUntil(lambda: "trained" in click_dock.block_label.text(), timeout=10_000)
    np.testing.assert_array_equal(np.asarray(target.data), kept)

    # close the click dock with its title bar's close button, reopen it from the menu
    layers_before = [ly.name for ly in viewer.layers]
    model = workspace_for(viewer).model
    title = click_dock.parent().titleBarWidget()
    click(qtbot, title.findChild(QPushButton, "QTitleBarCloseButton"))
    qtbot.wait(50)
    reopened = _dock_from_menu(qtbot, viewer, "Click segmentation", "ClickWidget")
    assert [ly.name for ly in viewer.layers] == layers_before  # no duplicated layers
    assert workspace_for(viewer).model is model and "trained" in reopened.block_label.text()
    assert _clicks_layer(viewer) is clicks  # the same layer, not a copy
    click_canvas(qtbot, viewer, clicks, _inside(truth[1], 2))
    assert [str(v) for v in clicks.features["label"]] == ["positive"]
    _wait_mask(qtbot, reopened)
    np.testing.assert_array_equal(np.asarray(target.data), kept)  # labels never lost on the way
    qtbot.waitUntil(lambda: not reopened.embedder.running, timeout=300_000)  # the reopened dock embeds the rest
    assert not uncaught, uncaught
