"""'Automatic segmentation' driven as a person does: class table, Train / Cancel, Load, Propose, a box deleted
on the canvas, Refine, Undo."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from gui_forms import choose, click, type_into, type_into_cell  # noqa: E402
from gui_input import click_button, click_canvas, drag_canvas, press_key, show_viewer  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402
from shapes_data import discs_and_squares  # noqa: E402

from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._autoseg_boxes import boxes_layer, reviewed_boxes  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402
from napari_rpsam2.app.autoseg_review import refine_boxes, write_objects  # noqa: E402
from napari_rpsam2.autoseg import GeneratorConfig, GeneratorTrainConfig, load_generator, save_generator  # noqa: E402
from napari_rpsam2.autoseg.refine import RefineOptions  # noqa: E402

WIDGET = "Automatic segmentation"
PAINTED = (1, slice(0, 24), slice(0, 64))  # what the person painted on slice 1 before refining


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    """A generator trained on discs and squares, saved as a person would have it from an earlier session."""
    from napari_rpsam2.app.autoseg_review import train_generator_on_arrays

    images, classes = discs_and_squares(24, seed=3)
    result = train_generator_on_arrays(images, classes, rgb=False, class_names={1: "disc", 2: "square"},
                                       config=GeneratorConfig(input_size=64, features=(8, 8, 16, 32, 64, 8)),
                                       train_config=GeneratorTrainConfig(epochs=20, batch_size=4, lr=5e-3))
    return save_generator(tmp_path_factory.mktemp("gen") / "shapes.safetensors", result.generator)


@pytest.fixture
def scene(make_napari_viewer, qtbot, model):
    """Six 64² slices of discs (id 1) and squares (id 2) on noise, annotated, and the dock."""
    images, classes = discs_and_squares(6, seed=7)
    viewer = make_napari_viewer()
    img = viewer.add_image(images, name="shapes")
    lab = viewer.add_labels(classes, name="annotation")
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    viewer.window._qt_window.resize(1280, 800)
    show_viewer(qtbot, viewer)
    viewer.reset_view()
    return viewer, img, lab, dock


def _epochs_seen_by_the_worker(monkeypatch) -> list[bool]:
    """Whether Cancel had been pressed when each epoch of the next training ended (recorded in the worker)."""
    import napari_rpsam2.app.autoseg_review as review

    real, flags = review.train_generator, []

    def recording(data, config, train_config, *, progress, on_epoch, cancel):
        def logged(log):
            flags.append(bool(cancel()))
            on_epoch(log)

        return real(data, config, train_config, progress=progress, on_epoch=logged, cancel=cancel)

    monkeypatch.setattr(review, "train_generator", recording)
    return flags


def test_train_shows_the_loss_and_dice_per_epoch_and_cancel_stops_within_an_epoch(scene, qtbot, tmp_path,
                                                                                   monkeypatch):
    viewer, img, lab, dock = scene
    click(qtbot, dock.classes_button)
    assert dock.classes.rowCount() == 2
    type_into_cell(qtbot, dock.classes, 0, 1, "disc")
    type_into_cell(qtbot, dock.classes, 1, 1, "")  # id 2 left unnamed
    click(qtbot, dock.train_button)
    assert not dock.running and "label ids [2] are not in the class map" in dock.status.text()  # said at once
    type_into_cell(qtbot, dock.classes, 1, 1, "square")
    assert dock.classes.names() == {1: "disc", 2: "square"}, dock.classes.names()
    type_into(qtbot, dock.train_form.epochs, "3")
    choose(qtbot, dock.train_form.input_size, "64")
    click(qtbot, dock.train_button)
    assert dock.running and dock.cancel_button.isEnabled(), dock.status.text()
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)
    assert dock.generator is not None, dock.status.text()
    assert dock.generator.classes == ["disc", "square"]
    assert len(dock.plot.logs) == 3 and all(log.val_mdsc is not None for log in dock.plot.logs)
    assert dock.plot.ax.lines and len(dock.plot.ax.lines[0].get_xdata()) == 3  # the loss curve has 3 points
    trained = dock.generator
    saved = tmp_path / "mine.safetensors"
    type_into(qtbot, dock.file, str(saved))
    click(qtbot, dock.save_button)
    assert load_generator(saved).classes == ["disc", "square"], dock.status.text()
    assert load_generator(saved).header["training"]["epochs"] == 3
    (tmp_path / "not-a-generator.safetensors").write_bytes(b"junk")
    type_into(qtbot, dock.file, str(tmp_path / "not-a-generator.safetensors"))
    click(qtbot, dock.load_button)
    assert "Could not load the generator" in dock.status.text() and dock.generator is trained

    flags = _epochs_seen_by_the_worker(monkeypatch)
    type_into(qtbot, dock.train_form.epochs, "500")
    click(qtbot, dock.train_button)
    qtbot.waitUntil(lambda: len(dock.plot.logs) >= 1, timeout=120_000)
    click(qtbot, dock.cancel_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    assert sum(flags) <= 1, "epochs ran on after Cancel"  # only the batch under way finishes its epoch
    assert len(flags) < 500
    assert dock.generator is trained, "a cancelled run replaced the generator"
    assert "Cancelled" in dock.status.text()


def test_a_deleted_box_gets_no_object_and_undo_reverts_the_run(scene, qtbot, generator_file, model):
    viewer, img, lab, dock = scene
    type_into(qtbot, dock.file, str(generator_file))
    click(qtbot, dock.load_button)
    assert dock.generator is not None, dock.status.text()
    earlier = np.zeros((6, 64, 64), np.int32)
    earlier[PAINTED] = 9  # an earlier object on the target
    target = viewer.add_labels(earlier, name="target")
    choose(qtbot, dock.target_picker, "target")
    for _ in range(viewer.dims.current_step[0] - 1):  # napari opens a stack on its middle slice
        press_key(qtbot, viewer, Qt.Key.Key_Left)  # the person steps back to slice 1
    assert viewer.dims.current_step[0] == 1
    click(qtbot, dock.propose_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    layer = boxes_layer(viewer, img)
    assert layer is not None and viewer.layers.selection.active is layer, dock.status.text()
    boxes = reviewed_boxes(layer, dock.generator.classes)
    assert len(boxes) >= 2 and {b.slice_index for b in boxes} == {1}
    assert set(layer.features["class"]) <= {"disc", "square"}

    # the person deletes the box furthest from the others: select mode, click inside it, Delete
    centres = np.array([[(b.box[0] + b.box[2]) / 2, (b.box[1] + b.box[3]) / 2] for b in boxes])
    spread = [np.sort(np.linalg.norm(centres - c, axis=1))[1] for c in centres]
    which = int(np.argmax(spread))
    click_button(qtbot, viewer.window._qt_viewer.controls.widgets[layer].select_button)
    click_canvas(qtbot, viewer, layer, (1, *centres[which]))
    assert layer.selected_data == {which}, layer.selected_data
    press_key(qtbot, viewer, "Delete")
    assert len(layer.data) == len(boxes) - 1
    # …and moves another by dragging it 3 rows down and 4 columns right
    moved = reviewed_boxes(layer, dock.generator.classes)[0]
    centre = ((moved.box[0] + moved.box[2]) / 2, (moved.box[1] + moved.box[3]) / 2)
    drag_canvas(qtbot, viewer, layer, (1, *centre), (1, centre[0] + 3, centre[1] + 4))
    kept = reviewed_boxes(layer, dock.generator.classes)
    assert len(kept) == len(boxes) - 1
    shift = [k.box - moved.box for k in kept if k.class_index == moved.class_index]
    assert any(np.allclose(d, [3, 4, 3, 4], atol=0.5) for d in shift), shift

    before = target.data.copy()
    choose(qtbot, dock.segment_form.stages.native, "Stage 1 (box + generator mask)")
    click(qtbot, dock.refine_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)
    assert f"from {len(kept)} box(es)" in dock.status.text(), dock.status.text()
    # the target is what the kept boxes alone give, written where it was empty
    expected, classes = before.copy(), np.zeros_like(before)
    generator = load_generator(generator_file)
    objects = refine_boxes(model, generator, img.data, kept, options=RefineOptions(stages=1), rgb=False,
                           contrast_limits=list(img.contrast_limits))  # SAM2 sees the layer as shown
    write_objects(expected, classes, objects)
    np.testing.assert_array_equal(target.data, expected)
    assert len(np.unique(target.data[1])) - 2 <= len(kept)  # background, the painted 9, one id per kept box
    assert (target.data[PAINTED] == 9).all()
    assert not np.array_equal(target.data, before), "no object was written"
    class_layer = [ly for ly in viewer.layers if ly.name == "target classes"][0]
    new = target.data != before
    assert set(np.unique(class_layer.data[new])) <= {1, 2} and not class_layer.data[~new].any()

    click(qtbot, dock.undo_button)
    np.testing.assert_array_equal(target.data, before)
    assert not class_layer.data.any()
    assert not dock.undo_button.isEnabled()


def test_cancel_stops_the_refinement_within_a_slice_and_writes_nothing(scene, qtbot, generator_file, monkeypatch):
    viewer, img, lab, dock = scene
    type_into(qtbot, dock.file, str(generator_file))
    click(qtbot, dock.load_button)
    click(qtbot, dock.propose_button)  # the slice on screen first
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    shown = viewer.dims.current_step[0]
    layer = boxes_layer(viewer, img)
    first = [b.box for b in reviewed_boxes(layer, dock.generator.classes)]
    assert first and {b.slice_index for b in reviewed_boxes(layer, dock.generator.classes)} == {shown}
    choose(qtbot, dock.segment_form.slices, "Range of slices")
    type_into(qtbot, dock.segment_form.last, "5")
    type_into(qtbot, dock.segment_form.first, "4")
    click(qtbot, dock.propose_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    assert {b.slice_index for b in reviewed_boxes(layer, dock.generator.classes)} == {shown, 4, 5}
    choose(qtbot, dock.segment_form.slices, "Whole stack")
    click(qtbot, dock.propose_button)  # then every slice: the boxes of the slice on screen are replaced, not doubled
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    boxes = reviewed_boxes(layer, dock.generator.classes)
    assert {b.slice_index for b in boxes} == set(range(6)), dock.status.text()
    assert len([b for b in boxes if b.slice_index == shown]) == len(first)
    import threading

    model = workspace_for(viewer).model
    embeds, pressed = [], threading.Event()
    real = model.embed

    def held_embed(*a, **k):  # the first slice's encoding lasts until the person has pressed Cancel
        embeds.append(1)
        pressed.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(model, "embed", held_embed)
    n_layers = len(viewer.layers)
    click(qtbot, dock.refine_button)
    qtbot.waitUntil(lambda: len(embeds) >= 1, timeout=60_000)
    click(qtbot, dock.cancel_button)
    pressed.set()
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    assert len(embeds) == 1, f"{len(embeds)} of 6 slices were encoded: Cancel did not stop within the slice"
    assert len(viewer.layers) == n_layers and "Cancelled" in dock.status.text()
    assert not dock.undo_button.isEnabled()


def test_boxes_layer_keeps_other_slices_and_takes_an_empty_proposal(make_napari_viewer):
    from napari_rpsam2._widgets._autoseg_boxes import show_boxes
    from napari_rpsam2.app.autoseg_review import BoxProposal

    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((4, 32, 32)))

    def box(z, k):
        return BoxProposal(z, k, ["a", "b"][k - 1], np.array([2.0, 3, 10, 12]), 0.5)

    layer = show_boxes(viewer, img, [box(1, 1), box(1, 2), box(2, 1)], ["a", "b"], [1, 2])
    assert show_boxes(viewer, img, [box(1, 2), box(3, 2)], ["a", "b"], [1, 3]) is layer
    got = reviewed_boxes(layer, ["a", "b"])
    assert sorted((g.slice_index, g.class_name) for g in got) == [(1, "b"), (2, "a"), (3, "b")]
    assert all(np.allclose(g.box, [2, 3, 10, 12]) for g in got)  # drawn around the pixels, read back exactly
    assert len(show_boxes(viewer, img, [], ["a", "b"], [0, 1, 2, 3]).data) == 0


def test_deleting_the_target_mid_run_stops_it_and_nothing_is_written(scene, qtbot, generator_file, monkeypatch):
    import threading

    viewer, img, lab, dock = scene
    type_into(qtbot, dock.file, str(generator_file))
    click(qtbot, dock.load_button)
    target = viewer.add_labels(np.zeros((6, 64, 64), np.int32), name="target")
    choose(qtbot, dock.target_picker, "target")
    choose(qtbot, dock.segment_form.slices, "Whole stack")
    click(qtbot, dock.propose_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    model = workspace_for(viewer).model
    entered, release = threading.Event(), threading.Event()
    real = model.embed

    def held_embed(*a, **k):  # the first slice's encoding takes until the person has deleted the target
        entered.set()
        release.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(model, "embed", held_embed)
    click(qtbot, dock.refine_button)
    qtbot.waitUntil(entered.is_set, timeout=30_000)
    viewer.layers.selection.active = target
    click_button(qtbot, viewer.window._qt_viewer.layerButtons.deleteButton)
    assert target not in viewer.layers
    assert "was deleted" in dock.status.text() and not dock.cancel_button.isEnabled(), dock.status.text()
    release.set()
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    assert "nothing was written" in dock.status.text(), dock.status.text()
    assert not target.data.any() and not [ly for ly in viewer.layers if ly.name.endswith("classes")]
    assert not dock.undo_button.isEnabled()


def test_a_2d_image_gets_boxes_and_objects_without_sam2(make_napari_viewer, qtbot, generator_file):
    images, _ = discs_and_squares(1, seed=53)
    viewer = make_napari_viewer()
    img = viewer.add_image(images[0], name="one picture")
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    type_into(qtbot, dock.file, str(generator_file))
    click(qtbot, dock.load_button)
    click(qtbot, dock.propose_button)  # no model is needed for the generator
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    layer = boxes_layer(viewer, img)
    assert layer is not None and layer.ndim == 2 and len(layer.data) > 0, dock.status.text()
    choose(qtbot, dock.segment_form.stages, "Generator only (no SAM2)")
    click(qtbot, dock.refine_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    target = dock.target_picker.layer()
    assert target is not None and target.data.shape == images[0].shape and target.data.max() >= 1, \
        dock.status.text()


def test_a_long_stack_segments_into_chunked_label_layers(make_napari_viewer, qtbot, generator_file, monkeypatch):
    """Layers past the dense limit are chunked in memory (long videos): the run is written there, not refused."""
    from napari_rpsam2.io.label_volume import DENSE_LIMIT_ENV, is_chunked, label_max

    monkeypatch.setenv(DENSE_LIMIT_ENV, "0")  # every new label layer chunked, as for a long video
    images, _ = discs_and_squares(1, seed=53)
    viewer = make_napari_viewer()
    img = viewer.add_image(images[0], name="one picture")
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    type_into(qtbot, dock.file, str(generator_file))
    click(qtbot, dock.load_button)
    click(qtbot, dock.propose_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    assert boxes_layer(viewer, img) is not None, dock.status.text()
    choose(qtbot, dock.segment_form.stages, "Generator only (no SAM2)")
    click(qtbot, dock.refine_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    target = dock.target_picker.layer()
    assert target is not None and is_chunked(target.data), dock.status.text()
    assert label_max(target.data) >= 1 and "written into" in dock.status.text(), dock.status.text()
