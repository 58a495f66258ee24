"""The automatic-segmentation dock in the rest of the plugin, driven as a person does: one undo step per run in
the layer's shared history (Ctrl-Z, Ctrl-Shift-Z, the dock's Undo), the class map following it, and the run saved
to the image's work folder and restored after napari is closed."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

import tifffile  # noqa: E402
from gui_forms import choose, click, tick, type_into  # noqa: E402
from gui_input import paint_stroke, press_key, show_viewer  # noqa: E402
from napari.layers import Labels, Shapes  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402
from shapes_data import discs_and_squares  # noqa: E402

from napari_rpsam2._widgets._autoseg_boxes import boxes_layer  # noqa: E402
from napari_rpsam2.autoseg import GeneratorConfig, GeneratorTrainConfig, save_generator  # noqa: E402

WIDGET = "Automatic segmentation"
CTRL, CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier, (Qt.KeyboardModifier.ControlModifier
                                                         | Qt.KeyboardModifier.ShiftModifier)


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    """A small generator trained on discs and squares, saved as from an earlier session."""
    from napari_rpsam2.app.autoseg_review import train_generator_on_arrays

    images, classes = discs_and_squares(16, seed=3)
    result = train_generator_on_arrays(images, classes, rgb=False, class_names={1: "disc", 2: "square"},
                                       config=GeneratorConfig(input_size=64, features=(8, 8, 16, 32, 64, 8)),
                                       train_config=GeneratorTrainConfig(epochs=15, batch_size=4, lr=5e-3))
    return save_generator(tmp_path_factory.mktemp("gen") / "shapes.safetensors", result.generator)


def _segment_current_slice(qtbot, viewer, dock, image, generator_file):
    """Load the generator, propose boxes on the slice on screen, segment them with the generator alone."""
    type_into(qtbot, dock.file, str(generator_file))
    click(qtbot, dock.load_button)
    assert dock.generator is not None, dock.status.text()
    choose(qtbot, dock.segment_picker, image.name)
    click(qtbot, dock.propose_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    assert boxes_layer(viewer, image) is not None and len(boxes_layer(viewer, image).data), dock.status.text()
    choose(qtbot, dock.segment_form.stages, "Generator only (no SAM2)")
    click(qtbot, dock.refine_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    assert "written into" in dock.status.text(), dock.status.text()


def test_ctrl_z_undoes_the_run_in_both_layers_then_the_stroke_and_ctrl_shift_z_redoes(make_napari_viewer, qtbot,
                                                                                       generator_file):
    images, _ = discs_and_squares(3, seed=11)
    viewer = make_napari_viewer(show=True)
    img = viewer.add_image(images, name="shapes")
    target = viewer.add_labels(np.zeros(images.shape, np.int32), name="target")
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    viewer.window._qt_window.resize(1280, 800)
    show_viewer(qtbot, viewer)
    viewer.reset_view()
    viewer.dims.set_current_step(0, 1)
    paint_stroke(qtbot, viewer, target, (2, 2), (2, 40), 9)  # the person's own stroke, before any run
    stroke = target.data.copy()
    assert (stroke[1] == 9).any()
    choose(qtbot, dock.target_picker, "target")
    _segment_current_slice(qtbot, viewer, dock, img, generator_file)
    run = target.data.copy()
    (classes,) = [ly for ly in viewer.layers if ly.name == "target classes"]
    run_classes = classes.data.copy()
    assert not np.array_equal(run, stroke) and run_classes.any()
    assert (run[stroke == 9] == 9).all()  # written only where the target was empty
    assert "automatic run" in dock.undo_button.toolTip() and dock.undo_button.isEnabled()

    viewer.layers.selection.active = target
    target.mode = "pan_zoom"
    press_key(qtbot, viewer, "Z", CTRL)  # the run, in the target and its class map
    np.testing.assert_array_equal(target.data, stroke)
    assert not classes.data.any()
    press_key(qtbot, viewer, "Z", CTRL)  # then the stroke made before it
    assert not target.data.any()
    press_key(qtbot, viewer, "Z", CTRL_SHIFT)  # redo the stroke…
    np.testing.assert_array_equal(target.data, stroke)
    press_key(qtbot, viewer, "Z", CTRL_SHIFT)  # …and the run, with its classes
    np.testing.assert_array_equal(target.data, run)
    np.testing.assert_array_equal(classes.data, run_classes)

    click(qtbot, dock.undo_button)  # the dock's Undo is the same history
    np.testing.assert_array_equal(target.data, stroke)
    assert not classes.data.any()
    assert "painting" in dock.undo_button.toolTip()  # what is left to undo in the target


def test_a_run_into_a_file_backed_stack_is_saved_and_comes_back_after_closing_napari(make_napari_viewer, qtbot,
                                                                                      generator_file, tmp_path):
    images, _ = discs_and_squares(3, seed=11)
    path = tmp_path / "shapes.tif"
    tifffile.imwrite(path, images, photometric="minisblack")
    viewer = make_napari_viewer(show=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    (image,) = viewer.open(str(path), plugin="napari")
    viewer.window._qt_window.resize(1280, 800)
    show_viewer(qtbot, viewer)
    viewer.reset_view()
    viewer.dims.set_current_step(0, 1)
    assert dock.target_picker.layer() is None, dock.target_picker.layer()  # no objects layer yet: a new one
    _segment_current_slice(qtbot, viewer, dock, image, generator_file)
    assert "Saved to shapes.rpsam2" in dock.status.text(), dock.status.text()
    target = dock.target_picker.layer()
    assert target.name == "shapes objects"
    saved = target.data.copy()
    n_objects = len(np.unique(saved)) - 1
    assert n_objects >= 1
    click(qtbot, dock.undo_button)
    assert not target.data.any()
    viewer.layers.selection.active = target
    target.mode = "pan_zoom"
    press_key(qtbot, viewer, "Z", CTRL_SHIFT)  # redo: the run is back
    np.testing.assert_array_equal(target.data, saved)
    viewer.close()

    journal = [json.loads(line) for line in (tmp_path / "shapes.rpsam2" / "objects.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in journal] == ["autoseg", "undo", "undo"]
    run = journal[0]
    assert journal[1]["undoes"] == run["seq"] and journal[2]["undoes"] == journal[1]["seq"]
    assert len(run["objects"]) == n_objects and run["model"] == {"method": "generator"}
    assert run["options"]["stages"] == 0 and run["generator"]["file"] == str(generator_file)
    assert len(run["generator"]["file_digest"]) == 64
    assert all(p["slice"] == [1] and len(p["box"]) == 4 and p["class"] in ("disc", "square")
               for p in run["prompts"])

    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin="napari")
    _, clicks = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
    qtbot.wait(10)
    (restored,) = [ly for ly in viewer.layers if isinstance(ly, Labels) and "napari_rpsam2" not in ly.metadata]
    np.testing.assert_array_equal(np.asarray(restored.data), saved)
    table = restored.features.set_index("index")
    for oid in run["objects"]:
        assert table.loc[oid, "made_by"] == "autoseg"
        assert table.loc[oid, "class"] == run["classes"][str(oid)]
    (boxes,) = [ly for ly in viewer.layers if isinstance(ly, Shapes)]  # each object's reviewed box
    assert len(boxes.data) == n_objects


def test_follow_through_the_stack_gives_one_id_per_object_on_every_slice_and_keeps_the_targets_labels(
        make_napari_viewer, qtbot, generator_file, model):
    from napari_rpsam2 import RPSAM2
    from napari_rpsam2._widgets._autoseg_boxes import reviewed_boxes
    from napari_rpsam2._widgets._workspace import workspace_for
    from napari_rpsam2.app.autoseg_review import follow_boxes, write_followed
    from napari_rpsam2.autoseg.refine import RefineOptions

    images, _ = discs_and_squares(1, seed=11)
    stack = np.repeat(images, 4, axis=0)  # the same shapes on four slices
    stack += np.random.default_rng(2).normal(0, 0.02, stack.shape).astype(stack.dtype)
    viewer = make_napari_viewer(show=True)
    img = viewer.add_image(stack, name="shapes")
    painted = np.zeros(stack.shape, np.int32)
    painted[3, :, :20] = 7  # the person's own labels on the last slice
    target = viewer.add_labels(painted.copy(), name="target")
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    viewer.window._qt_window.resize(1280, 800)
    show_viewer(qtbot, viewer)
    viewer.reset_view()
    viewer.dims.set_current_step(0, 0)
    qtbot.waitUntil(dock.isVisible, timeout=5_000)  # the dock is on screen
    choose(qtbot, dock.target_picker, "target")
    choose(qtbot, dock.segment_picker, "shapes")
    assert dock.segment_form.follow.native.isVisible() and not dock.segment_form.follow.value  # off by default
    tick(qtbot, dock.segment_form.follow)  # the person ticks it
    assert dock.segment_form.follow.value
    type_into(qtbot, dock.file, str(generator_file))
    click(qtbot, dock.load_button)
    click(qtbot, dock.propose_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    boxes = reviewed_boxes(boxes_layer(viewer, img), dock.generator.classes)
    assert boxes and {b.slice_index for b in boxes} == {0}
    choose(qtbot, dock.segment_form.stages, "Generator only (no SAM2)")
    click(qtbot, dock.refine_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)
    assert "written into 'target'" in dock.status.text(), dock.status.text()

    new = target.data != painted
    assert (target.data[painted != 0] == 7).all()  # nothing written where the target held labels
    ids = sorted(set(np.unique(target.data[new]).tolist()))
    assert 1 <= len(ids) <= len(boxes)  # one id per object, never one per slice
    # the dock wrote what the use case gives for these boxes
    expected, classes = painted.copy(), np.zeros_like(painted)
    run = follow_boxes(model, dock.generator, img.data, boxes, painted != 0,
                       options=RefineOptions(stages=0, follow=True), rgb=False,
                       contrast_limits=list(img.contrast_limits))
    write_followed(expected, classes, run)
    np.testing.assert_array_equal(target.data, expected)
    spans = {i: int(np.any(target.data == i, axis=(1, 2)).sum()) for i in ids}
    assert max(spans.values()) > 1, spans  # followed beyond its key slice
