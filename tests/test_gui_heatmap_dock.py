"""Heatmap dock driven as a person does: pick, type, click Compute / Cancel; maps follow the object."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from gui_forms import choose, click, tick, type_into  # noqa: E402

from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._views import plugin_role  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402

WIDGET = "Click-sensitivity heatmap"


@pytest.fixture
def scene(make_napari_viewer, instrument_stack):
    image, labels = instrument_stack
    viewer = make_napari_viewer()
    img = viewer.add_image(image[:2], rgb=True, name="frames", scale=(1, 0.5, 0.5), translate=(0, 3, 4))
    lab = viewer.add_labels(labels[:2], name="annotations", scale=(1, 0.5, 0.5), translate=(0, 3, 4))
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", WIDGET)
    return viewer, img, lab, dock


def _maps(viewer):
    return {layer.name: layer for layer in viewer.layers if plugin_role(layer) == "heatmap"}


def _compute(qtbot, dock):
    click(qtbot, dock.run_button)
    assert dock.running and not dock.run_button.isEnabled()
    qtbot.waitUntil(lambda: not dock.running, timeout=120_000)


def test_new_object_with_untrained_block_leaves_no_stale_rpsam2_map(scene, qtbot, model, moving_model):
    viewer, img, lab, dock = scene
    workspace = workspace_for(viewer)
    workspace.set_model(RPSAM2(model.backbone, moving_model.shift_block))
    assert "SAM2 and RP-SAM2" in dock.model_line.text()
    viewer.dims.set_current_step(0, 1)
    type_into(qtbot, dock.object_id, "2")
    type_into(qtbot, dock.stride, "24")
    assert (dock.object_id.value, dock.stride.value) == (2, 24)
    bars = []
    dock.progress.valueChanged.connect(lambda v: bars.append((dock.progress.format(), v, dock.progress.maximum())))
    _compute(qtbot, dock)
    maps = _maps(viewer)
    assert set(maps) == {"frames Dice SAM2", "frames Dice RP-SAM2"}, dock.status.text()
    assert any(fmt.startswith("RP-SAM2") and v == top for fmt, v, top in bars)
    rp = maps["frames Dice RP-SAM2"]
    assert rp.visible and not maps["frames Dice SAM2"].visible and rp.colorbar.visible
    # a one-slice layer placed on slice 1, in the image's frame
    assert rp.data.shape == (1, *img.data.shape[1:3])
    np.testing.assert_allclose(rp.scale, img.scale)
    np.testing.assert_allclose(rp.translate, [1, 3, 4])
    finite = rp.data[np.isfinite(rp.data)]
    assert finite.size and 0 <= finite.min() and finite.max() <= 1
    assert np.isfinite(rp.data[0])[lab.data[1] == 0].mean() < 0.05
    visual = viewer.window._qt_viewer.canvas.layer_to_visual[rp]
    assert visual.node.visible
    viewer.dims.set_current_step(0, 0)  # the map belongs to slice 1 only
    assert not visual.node.visible
    viewer.dims.set_current_step(0, 1)
    assert "object 2" in dock.stats.text() and "RP-SAM2" in dock.stats.text()

    # an untrained block, another object: only a SAM2 map, of that object
    workspace.use_shift_block(RPSAM2(model.backbone).shift_block)
    assert "SAM2 map only" in dock.model_line.text()
    type_into(qtbot, dock.object_id, "1")
    _compute(qtbot, dock)
    maps = _maps(viewer)
    assert set(maps) == {"frames Dice SAM2"}, "an RP-SAM2 map of the old object is still shown"
    assert maps["frames Dice SAM2"].visible
    assert maps["frames Dice SAM2"].metadata["napari_rpsam2"]["reference"].startswith("object 1")
    assert "object 1" in dock.stats.text() and "RP-SAM2" not in dock.stats.text()
    # pickers never offer the plugin's own layers
    names = [dock.image_picker.itemText(i) for i in range(dock.image_picker.count())]
    assert names == ["frames"]


def test_messages_cancel_and_the_click_preview(scene, qtbot, model):
    viewer, img, lab, dock = scene
    click(qtbot, dock.run_button)
    assert "load one in the click dock's Model box" in dock.status.text() and "'random'" in dock.status.text()
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    type_into(qtbot, dock.object_id, "9")
    click(qtbot, dock.run_button)
    assert "Object 9 is not in 'annotations'" in dock.status.text() and not dock.running
    type_into(qtbot, dock.object_id, "1")
    type_into(qtbot, dock.stride, "2")  # many grid clicks: Cancel lands between chunks
    click(qtbot, dock.run_button)
    click(qtbot, dock.cancel_button)
    qtbot.waitUntil(lambda: not dock.running, timeout=60_000)
    assert "Cancelled" in dock.status.text() and not _maps(viewer)
    assert dock.run_button.isEnabled()

    # the click preview as the object (the slice's embedding is cached by now)
    tick(qtbot, dock.use_preview)
    assert not dock.labels_picker.isEnabled()
    type_into(qtbot, dock.stride, "24")
    click(qtbot, dock.run_button)
    assert "No preview" in dock.status.text() and not dock.running
    # what the click dock leaves: a Labels layer marked as the preview of this image
    preview = (lab.data == 2).astype(np.uint8)
    viewer.add_labels(preview, name="frames preview", scale=lab.scale, translate=lab.translate,
                      metadata={"napari_rpsam2": {"role": "preview", "image": img.unique_id}})
    assert [dock.labels_picker.itemText(i) for i in range(dock.labels_picker.count())] == ["annotations"]
    _compute(qtbot, dock)
    maps = _maps(viewer)
    assert set(maps) == {"frames Dice SAM2"}, dock.status.text()
    assert maps["frames Dice SAM2"].metadata["napari_rpsam2"]["reference"].startswith("the click preview")
    painted = np.isfinite(maps["frames Dice SAM2"].data[0])
    assert painted[preview[0] == 0].mean() < 0.05 and painted[preview[0] == 1].any()

    # a second image: its map joins the first image's, which stays (a map belongs to its image)
    viewer.add_image(np.asarray(img.data), rgb=True, name="frames again", scale=img.scale, translate=img.translate)
    choose(qtbot, dock.image_picker, "frames again")
    tick(qtbot, dock.use_preview)  # back to the annotations
    choose(qtbot, dock.labels_picker, "annotations")
    _compute(qtbot, dock)
    maps = _maps(viewer)
    assert set(maps) == {"frames Dice SAM2", "frames again Dice SAM2"}, dock.status.text()
    assert maps["frames Dice SAM2"].metadata["napari_rpsam2"]["reference"].startswith("the click preview")
    assert maps["frames again Dice SAM2"].metadata["napari_rpsam2"]["reference"].startswith("object 1")
