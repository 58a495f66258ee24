"""Training dock driven as a person does: type the settings, click Start / Stop / Use the trained block."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from gui_forms import click, type_into  # noqa: E402

from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._slicing import image_slice  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402
from napari_rpsam2.model import read_header  # noqa: E402
from napari_rpsam2.model.shift_block import offset_is_identity  # noqa: E402

WIDGET = "Train shift block"


@pytest.fixture
def scene(make_napari_viewer, instrument_stack, model):
    """Two small annotated frames; the labels opened from an RGB PNG (three equal channels)."""
    image, labels = instrument_stack
    viewer = make_napari_viewer()
    img = viewer.add_image(image[:2, :128, :160], rgb=True, name="annotated frames")
    rgb_labels = np.repeat(labels[:2, :128, :160, None], 3, axis=-1).astype(np.uint8)
    lab = viewer.add_image(rgb_labels, rgb=True, name="labels.png")
    workspace = workspace_for(viewer)
    workspace.set_model(RPSAM2(model.backbone))
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    dock.image_picker.set_layer(img)
    assert dock.labels_picker.layer() is lab  # the label PNG is offered, the photo is not
    assert dock.labels_picker.count() == 1
    return viewer, img, dock, workspace


def _fill_form(qtbot, dock, out, epochs: str, stride: str = "4") -> None:
    click(qtbot, dock.params_button)  # unfold the hyper-parameters
    type_into(qtbot, dock.form.epochs, epochs)
    type_into(qtbot, dock.form.lr, "0.01")
    type_into(qtbot, dock.form.clicks_per_object, "1")
    type_into(qtbot, dock.form.grid_stride, stride)
    type_into(qtbot, dock.form.eval_clicks, "1")
    type_into(qtbot, dock.out, str(out))


def test_start_trains_without_blocking_and_hands_the_block_over(scene, qtbot, tmp_path, model, monkeypatch):
    viewer, img, dock, workspace = scene
    assert (dock.form.epochs.value, dock.form.batch_size.value, dock.form.lr.value) == (1500, 4, 1e-4)
    out = tmp_path / "block.safetensors"
    _fill_form(qtbot, dock, out, "2", stride="8")
    assert dock.config().epochs == 2 and dock.config().grid_stride == 8 and str(dock.out.value) == str(out)
    for i in range(2):  # the click dock has embedded both slices already
        sl = image_slice(viewer, img, (i,))
        workspace.model.embed(sl.plane, contrast_limits=list(img.contrast_limits), rgb=True, key=sl.key)
    encodes = []
    real = model.backbone.encode
    monkeypatch.setattr(model.backbone, "encode", lambda *a, **k: encodes.append(1) or real(*a, **k))
    bars = []
    dock.progress.valueChanged.connect(lambda v: bars.append((dock.progress.format(), v, dock.progress.maximum())))
    changed = []
    workspace.events.shift_block_changed.connect(changed.append)

    began = time.perf_counter()
    click(qtbot, dock.start_button)
    blocked = time.perf_counter() - began
    assert dock.running and not dock.start_button.isEnabled()
    assert blocked < 0.3, f"Start blocked the GUI thread for {blocked:.2f} s"
    qtbot.waitUntil(lambda: not dock.running, timeout=170_000)
    trained = dock.trained
    assert trained is not None and not trained.result.cancelled, dock.status.text()
    assert encodes == [], "training encoded slices the workspace already had"
    candidate_values = [v for fmt, v, _ in bars if fmt.startswith("candidate grid clicks")]
    assert len(candidate_values) > len(trained.data.train.objects())  # per chunk, not per object
    assert any(fmt.startswith("epochs") and v == 2 for fmt, v, _ in bars)
    assert out.exists() and read_header(out)["backbone"] == model.backbone.name
    assert "held out for validation" in dock.status.text()
    # the plot: two epochs, whole-number ticks, legend outside the axes
    plot = dock.plot
    assert len(plot.logs) == 2 and plot.logs[-1].val_mdsc is not None
    lo, hi = plot.ax.get_xlim()
    ticks = [t for t in plot.ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert plot.figure.legends and not plot.ax.get_legend()
    assert offset_is_identity(workspace.model.shift_block)  # nothing changes before the user asks

    click(qtbot, dock.use_button)
    assert changed and not offset_is_identity(workspace.model.shift_block), dock.status.text()
    assert "now use" in dock.status.text()


def test_stop_ends_within_one_step(scene, qtbot, tmp_path):
    _, _, dock, _ = scene
    _fill_form(qtbot, dock, tmp_path / "stopped.safetensors", "1000", stride="24")
    click(qtbot, dock.start_button)
    qtbot.waitUntil(lambda: len(dock.plot.logs) >= 1, timeout=170_000)
    seen = len(dock.plot.logs)
    click(qtbot, dock.stop_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    result = dock.trained.result
    assert result.cancelled and len(result.history) <= seen + 1
    assert result.checkpoint is not None and result.checkpoint.exists()
    assert dock.start_button.isEnabled() and dock.use_button.isEnabled()


def test_messages_for_missing_model_and_bad_labels(make_napari_viewer, qtbot, tmp_path, model):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    type_into(qtbot, dock.out, str(tmp_path / "x.safetensors"))
    click(qtbot, dock.start_button)
    assert "load one in the click dock's Model box" in dock.status.text()
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    click(qtbot, dock.start_button)
    assert "Pick the training image" in dock.status.text()
    viewer.add_image(np.zeros((2, 32, 32), np.float32), name="pic")
    colour = np.zeros((2, 32, 32, 3), np.uint8)
    colour[:, 4:9, 4:9] = (1, 2, 3)
    viewer.add_image(colour, rgb=True, name="colour picture")
    offered = [dock.labels_picker.itemText(i) for i in range(dock.labels_picker.count())]
    assert offered == [], "a colour picture is offered as labels"
    empty = viewer.add_labels(np.zeros((2, 32, 32), np.int32), name="nothing")
    dock.labels_picker.set_layer(empty)
    click(qtbot, dock.start_button)
    assert "empty" in dock.status.text() and not dock.running


def test_close_button_disconnects_the_pickers(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    dock_widget, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    viewer.add_image(np.zeros((16, 16), np.float32), name="first")
    assert dock.image_picker.count() == 1
    click(qtbot, dock_widget.title.close_button)
    viewer.add_image(np.zeros((16, 16), np.float32), name="second")
    assert dock.image_picker.count() == 1, "the closed dock still follows the layer list"
    callbacks = [getattr(cb, "__name__", "") for cb in viewer.layers.events.inserted.callbacks]
    assert "refresh" not in str(callbacks)


def test_docks_fit_a_1280_by_800_window(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 800)
    for name in (WIDGET, "Click-sensitivity heatmap"):
        dock_widget, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", name)
        assert dock.maximumWidth() <= 420
    qtbot.wait(200)
    assert window.width() <= 1280, f"the window grew to {window.width()} px"


def test_docks_squeezed_to_their_narrowest_never_cut_off_their_content(make_napari_viewer, qtbot):
    """Two docks stacked in a low window, the dock area dragged as narrow as it goes: nothing is clipped."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 600)  # low: the docks need their vertical scroll bars
    docks = [viewer.window.add_plugin_dock_widget("napari-rpsam2", name)
             for name in ("Click segmentation", "Propagate through stack")]
    qtbot.wait(100)
    window.resizeDocks([dw for dw, _ in docks], [10, 10], Qt.Orientation.Horizontal)  # the splitter dragged right
    qtbot.wait(200)
    for _, dock in docks:
        scroll = dock.findChild(QScrollArea)
        needed = scroll.widget().minimumSizeHint().width()
        assert scroll.viewport().width() >= needed, f"{type(dock).__name__}: {scroll.viewport().width()} < {needed}"


def _answer(qtbot, button, seen: list) -> None:
    """Click ``button`` of the question box as soon as it shows (it blocks until answered)."""
    from qtpy.QtCore import Qt, QTimer
    from qtpy.QtWidgets import QApplication, QMessageBox

    def press() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, press)
            return
        seen.append(box.text())
        qtbot.mouseClick(box.button(button), Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, press)


def test_start_asks_before_replacing_a_checkpoint(scene, qtbot, tmp_path):
    from qtpy.QtWidgets import QMessageBox

    _, _, dock, _ = scene
    out = tmp_path / "kept.safetensors"
    out.write_bytes(b"a long-trained block")
    _fill_form(qtbot, dock, out, "1000", stride="24")
    asked: list[str] = []
    _answer(qtbot, QMessageBox.StandardButton.No, asked)
    click(qtbot, dock.start_button)
    assert asked and "kept.safetensors" in asked[0] and "Replace" in asked[0]
    assert not dock.running and "was kept" in dock.status.text()
    assert out.read_bytes() == b"a long-trained block"

    _answer(qtbot, QMessageBox.StandardButton.Yes, asked)
    click(qtbot, dock.start_button)
    assert len(asked) == 2 and dock.running
    click(qtbot, dock.stop_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)


def test_adapter_fine_tuning_writes_a_file_stops_on_cancel_and_is_used_when_asked(scene, qtbot, tmp_path, model,
                                                                                   monkeypatch):
    from napari_rpsam2.model.adapters import read_adapter_header

    _, _, dock, workspace = scene
    section = dock.adapters
    assert not section.body.isVisible()
    click(qtbot, section.toggle)  # unfold the section
    type_into(qtbot, section.form.epochs, "40")
    stopped = tmp_path / "stopped.safetensors"
    type_into(qtbot, section.out, str(stopped))
    import napari_rpsam2.app.finetune as finetune

    real, flags = finetune.finetune_adapters, []  # whether Stop had been pressed when each epoch ended

    def recording(backbone, stack, config, *, progress, on_epoch, cancel):
        return real(backbone, stack, config, progress=progress, cancel=cancel,
                    on_epoch=lambda log: flags.append(bool(cancel())) or on_epoch(log))

    monkeypatch.setattr(finetune, "finetune_adapters", recording)
    click(qtbot, section.start_button)
    assert dock.running and dock.stop_button.isEnabled() and not dock.start_button.isEnabled()
    qtbot.waitUntil(lambda: len(dock.plot.logs) >= 1, timeout=170_000)
    click(qtbot, dock.stop_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)
    assert sum(flags) <= 1 and len(flags) < 40  # stops within the slice under way: at most its epoch ends
    assert "no adapter file was written" in dock.status.text()
    monkeypatch.undo()
    assert not stopped.exists() and not list(tmp_path.glob("*.tmp*"))
    assert not section.use_button.isEnabled()

    out = tmp_path / "adapters.safetensors"
    type_into(qtbot, section.form.epochs, "2")
    type_into(qtbot, section.out, str(out))
    click(qtbot, section.start_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=170_000)
    assert out.exists(), dock.status.text()
    assert read_adapter_header(out)["backbone"] == model.backbone.name
    assert len(dock.plot.logs) == 2 and dock.plot.ax.lines  # the loss per epoch
    assert workspace.model.backbone.adapters is None  # the viewer's SAM2 is unchanged until asked
    try:
        heard = []
        workspace.events.model_changed.connect(heard.append)
        click(qtbot, section.use_button)
        assert workspace.model.backbone.adapters is not None, dock.status.text()
        assert heard == [workspace.model]  # through the workspace: every dock (and the Load model form) hears
        assert workspace.model.backbone.adapter_header["file"] == str(out)
        assert "now uses the adapters" in dock.status.text()
    finally:
        model.backbone.use_adapters(None)  # the session's backbone is shared with other tests
