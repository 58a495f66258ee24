"""Large label layers are kept chunked and compressed in memory; a person works on them as on any layer.

The chunked form is forced here (``NAPARI_RPSAM2_DENSE_LABELS_MIB=0``) on
small stacks so the tests stay fast; everything after the scene set-up is
mouse and keyboard input on the canvas and the docks' buttons.
"""

from __future__ import annotations

import resource

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from gui_forms import choose  # noqa: E402
from gui_input import click_button, click_canvas, drag_canvas, paint_stroke, press_key  # noqa: E402
from gui_scenes import clicks_layer, inside  # noqa: E402
from napari.layers import Labels  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402
from napari_rpsam2.io.label_volume import DENSE_LIMIT_ENV, is_chunked, new_label_volume  # noqa: E402
from napari_rpsam2.sample_data import make_instrument_stack  # noqa: E402

TIMEOUT = 120_000
PLUGIN = "napari-rpsam2"


@pytest.fixture(scope="module")
def stack():
    return make_instrument_stack(3)


def _viewer(qtbot, make_napari_viewer, model, image):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name="frames", rgb=True)
    _, clicks = viewer.window.add_plugin_dock_widget(PLUGIN, "Click segmentation")
    clicks.precompute_box.setChecked(False)
    viewer.window._qt_window.resize(1280, 800)
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    qtbot.wait(10)
    viewer.reset_view()
    viewer.dims.set_current_step(0, 0)
    return viewer, clicks


def _commit(qtbot, viewer, clicks, where):
    click_canvas(qtbot, viewer, clicks_layer(viewer), where)
    qtbot.waitUntil(lambda: not clicks.busy and "mask of" in clicks.status.text(), timeout=TIMEOUT)
    click_button(qtbot, clicks.commit_button)
    (target,) = [ly for ly in viewer.layers if isinstance(ly, Labels) and "preview" not in ly.name]
    return target


def _commit_and_propagate(qtbot, make_napari_viewer, model, stack):
    """The click dock's commit on slice 0, then the Propagate dock's run into the same layer; the labels."""
    image, truth = stack
    viewer, clicks = _viewer(qtbot, make_napari_viewer, model, image)
    target = _commit(qtbot, viewer, clicks, inside(truth[0], 1))
    committed = np.array(target.data[:])
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Propagate through stack")
    choose(qtbot, dock.source_picker, target.name)
    choose(qtbot, dock.target_picker, target.name)
    click_button(qtbot, dock.run_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    assert "Propagated" in dock.status.text(), dock.status.text()
    return viewer, target, committed, np.array(target.data[:])


def test_commit_and_propagation_into_a_chunked_layer_equal_the_dense_result(make_napari_viewer, qtbot, model,
                                                                            stack, monkeypatch):
    monkeypatch.setenv(DENSE_LIMIT_ENV, "1024")
    viewer, target, dense_commit, dense = _commit_and_propagate(qtbot, make_napari_viewer, model, stack)
    assert isinstance(target.data, np.ndarray)
    viewer.close()
    monkeypatch.setenv(DENSE_LIMIT_ENV, "0")
    viewer, target, chunked_commit, chunked = _commit_and_propagate(qtbot, make_napari_viewer, model, stack)
    assert is_chunked(target.data)
    assert np.array_equal(chunked_commit, dense_commit) and (chunked_commit[0] == 1).any()
    assert np.array_equal(chunked, dense)
    assert (chunked[1] == 1).any() and (chunked[2] == 1).any(), "object 1 did not reach the other slices"


def test_painting_a_chunked_layer_and_ctrl_z(make_napari_viewer, qtbot, model, stack, monkeypatch, tmp_path):
    import tifffile

    monkeypatch.setenv(DENSE_LIMIT_ENV, "0")
    image, truth = stack
    viewer, clicks = _viewer(qtbot, make_napari_viewer, model, image)
    target = _commit(qtbot, viewer, clicks, inside(truth[0], 2))
    assert is_chunked(target.data)
    committed = np.array(target.data[:])
    # the person paints object 7 with the brush on slice 1, then takes the stroke back with Ctrl-Z
    viewer.dims.set_current_step(0, 1)
    paint_stroke(qtbot, viewer, target, (20.0, 20.0), (20.0, 60.0), 7)
    painted = np.asarray(target.data[1]) == 7
    assert painted[20, 20:61].all() and painted.sum() >= 5 * 41
    assert np.array_equal(target.data[0], committed[0])
    shown = np.asarray(target._slice.image.raw)  # what the canvas shows is what the layer holds
    assert np.array_equal(shown == 7, painted)
    press_key(qtbot, viewer, "Z", Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(target.data[:], committed)
    # saved through napari's writer (the plugin's), one slice at a time
    drag_canvas(qtbot, viewer, target, (30.0, 10.0), (30.0, 40.0))
    viewer.layers.selection.active = target
    viewer.layers.save(str(tmp_path / "objects.tif"), selected=True, plugin=PLUGIN)
    assert np.array_equal(tifffile.imread(tmp_path / "objects.tif"), np.asarray(target.data[:]))


def test_a_layer_for_the_15000_frame_video_is_made_and_shows_a_written_slice(make_napari_viewer, qtbot):
    """The issue's video (15,000 frames of 1024×768: 47 GB as dense int32) gets a Labels layer."""
    from napari_rpsam2.app.propagation import write_new_labels
    from napari_rpsam2.model.label_planes import LabelPlanes
    from napari_rpsam2.model.propagation import PropagationResult

    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1])
    shape = (15_000, 768, 1024)
    viewer = make_napari_viewer(show=True)
    layer = viewer.add_labels(new_label_volume(shape), name="video objects")
    plane = np.zeros(shape[1:], np.int32)
    plane[200:600, 300:800] = 3
    labels = LabelPlanes(shape, np.int32)
    labels[12_345] = plane
    tracked = np.zeros(shape[0], bool)
    tracked[12_345] = True
    write_new_labels(layer.data, PropagationResult(labels, np.zeros((shape[0], 1), np.float32), (3,), tracked))
    viewer.dims.set_current_step(0, 12_345)
    qtbot.wait(50)
    assert np.array_equal(np.asarray(layer._slice.image.raw) == 3, plane == 3)
    with open("/proc/self/statm") as f:
        grown = (int(f.read().split()[1]) - before) * resource.getpagesize() / 2**20
    assert grown < 400, f"memory grew by {grown:.0f} MiB"  # a viewer's own start-up is most of it
