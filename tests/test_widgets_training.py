"""Training widget in a real napari viewer: two short epochs, a checkpoint, Stop within one step."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2.model import read_header  # noqa: E402
from napari_rpsam2.model.shift_block import offset_is_identity  # noqa: E402

WIDGET = "Train shift block"


@pytest.fixture
def training(make_napari_viewer, instrument_stack, model):
    image, labels = instrument_stack
    viewer = make_napari_viewer()
    img = viewer.add_image(image[:2], rgb=True, name="annotated frames")  # split: 1 train, 1 val slice
    lab = viewer.add_labels(labels[:2], name="their labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    widget.set_model(model)
    widget.image_picker.set_layer(img)
    widget.labels_picker.set_layer(lab)
    widget.stride.setValue(32)  # few candidate points: fast on a CPU
    widget.eval_clicks.setValue(1)
    widget.clicks.setValue(1)  # one click per object per step keeps a CPU epoch short
    return viewer, widget


def test_two_epochs_write_checkpoint_and_load(training, qtbot, tmp_path, model):
    viewer, widget = training
    assert (widget.epochs.value(), widget.batch.value()) == (1500, 4)
    assert (widget.lr.value(), widget.theta.value(), widget.epsilon.value()) == (1e-4, 15.0, 0.005)
    widget.epochs.setValue(2)
    widget.lr.setValue(1e-2)
    out = tmp_path / "block.safetensors"
    widget.out.setText(str(out))
    widget.start()
    assert widget.running and not widget.start_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.running, timeout=170_000)
    assert widget.result is not None, widget.status.text()
    assert not widget.result.cancelled and len(widget.result.history) == 2
    assert out.exists() and read_header(out)["backbone"] == model.backbone.name
    assert len(widget.plot.logs) == 2 and widget.plot.logs[-1].val_mdsc is not None
    assert offset_is_identity(model.shift_block)  # the shared model is left alone

    # one click loads it into the click widget (given its own model on the shared backbone)
    _, click = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation (RP-SAM2)")
    click.precompute_box.setChecked(False)
    click.set_model(RPSAM2(model.backbone, cache=model.cache))
    assert widget.load_button.isEnabled()
    widget.load_button.click()
    assert "now uses" in widget.status.text(), widget.status.text()
    assert not offset_is_identity(click.model.shift_block)
    assert click.settings.shift_block.text() == str(out)


def test_stop_ends_within_one_step(training, qtbot, tmp_path):
    _, widget = training
    widget.out.setText(str(tmp_path / "stopped.safetensors"))
    widget.start()
    qtbot.waitUntil(lambda: len(widget.plot.logs) >= 1, timeout=170_000)
    seen = len(widget.plot.logs)
    widget.stop_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    result = widget.result
    assert result is not None and result.cancelled
    # one step per epoch here (1 training slice, batch 4): at most one more epoch ran
    assert len(result.history) <= seen + 1
    assert result.checkpoint is not None and result.checkpoint.exists()
    assert widget.start_button.isEnabled()


def test_bad_input_messages(make_napari_viewer, qtbot, tmp_path, model):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    widget.start()
    assert "No model" in widget.status.text()
    widget.set_model(model)
    widget.out.setText(str(tmp_path / "x.safetensors"))
    widget.start()
    assert "Pick the training image" in widget.status.text()
    viewer.add_image(np.zeros((2, 32, 32), np.float32))
    viewer.add_labels(np.zeros((2, 32, 32), np.int32))
    widget.start()
    assert "empty" in widget.status.text() and not widget.running
