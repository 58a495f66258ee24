"""Heatmap widget in a real napari viewer: aligned Dice maps in [0, 1], stats, Cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2.model import ShiftBlock, ShiftBlockConfig  # noqa: E402

WIDGET = "Click-sensitivity heatmap"


@pytest.fixture
def viewer_with_sample(make_napari_viewer, instrument_stack):
    image, labels = instrument_stack
    viewer = make_napari_viewer()
    img = viewer.add_image(image[:2], rgb=True, name="frames", scale=(1, 0.5, 0.5), translate=(0, 3, 4))
    lab = viewer.add_labels(labels[:2], name="annotations", scale=(1, 0.5, 0.5), translate=(0, 3, 4))
    return viewer, img, lab


def _moving_model(model: RPSAM2) -> RPSAM2:
    """Same backbone and cache, but a shift block that is not the identity."""
    torch.manual_seed(1)
    block = ShiftBlock(ShiftBlockConfig())
    with torch.no_grad():
        block.offset_head.weight.normal_(0, 0.05)
    return RPSAM2(model.backbone, block, cache=model.cache)


def test_heatmap_layers_aligned_in_unit_range(viewer_with_sample, qtbot, model):
    viewer, img, lab = viewer_with_sample
    _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    widget.set_model(_moving_model(model))
    widget.image_picker.set_layer(img)
    widget.labels_picker.set_layer(lab)
    widget.object_id.setValue(2)
    widget.stride.setValue(14)
    viewer.dims.set_current_step(0, 1)
    widget.run()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert len(widget.last_maps) == 2, widget.status.text()
    layers = [layer for layer in viewer.layers if layer.name.startswith("Dice heatmap")]
    assert {layer.name for layer in layers} == {"Dice heatmap SAM2", "Dice heatmap RP-SAM2"}
    for layer in layers:
        assert layer.data.shape == img.data.shape[1:3]
        np.testing.assert_allclose(layer.scale, img.scale[-2:])
        np.testing.assert_allclose(layer.translate, img.translate[-2:])
        assert tuple(layer.contrast_limits) == (0.0, 1.0)
        finite = layer.data[np.isfinite(layer.data)]
        assert finite.size > 0 and finite.min() >= 0.0 and finite.max() <= 1.0
        # painted only over the object of slice 1
        assert np.isfinite(layer.data)[lab.data[1] == 0].mean() < 0.05
    text = widget.stats.text()
    assert "SAM2" in text and "RP-SAM2" in text and "mean Dice" in text and "&lt; 0.5" in text


def test_heatmap_messages_and_cancel(viewer_with_sample, qtbot, model):
    viewer, img, lab = viewer_with_sample
    _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    widget.run()
    assert "No model" in widget.status.text()
    widget.set_model(model)
    widget.image_picker.set_layer(img)
    widget.labels_picker.set_layer(lab)
    widget.object_id.setValue(9)
    widget.run()
    assert "Object 9 is not in 'annotations'" in widget.status.text()
    widget.object_id.setValue(1)
    widget.stride.setValue(3)  # many points: several chunks, so Cancel lands mid-way
    widget.run()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert "Cancelled" in widget.status.text()
    assert not [layer for layer in viewer.layers if layer.name.startswith("Dice heatmap")]
