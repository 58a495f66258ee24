"""SAM2 adapters through the Model box's *Load model*: typed path, Load pressed, clicks on the canvas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from gui_forms import click, type_into  # noqa: E402
from gui_input import click_canvas  # noqa: E402
from gui_scenes import clicks_layer, inside, open_click_dock  # noqa: E402
from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402
from napari_rpsam2.model import EmbeddingCache  # noqa: E402
from napari_rpsam2.model.adapters import SAM2Adapters, save_adapters  # noqa: E402
from napari_rpsam2.sample_data import make_instrument_stack  # noqa: E402


@pytest.fixture(scope="module")
def adapter_files(model, tmp_path_factory):
    """Adapters with non-zero weights in every place, saved for this backbone and (the same tensors) for another."""
    adapters = SAM2Adapters(model.backbone.model)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        for p in adapters.parameters():
            p.add_(0.2 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("adapters")
    good = save_adapters(folder / "fine_tuned.safetensors", adapters, model.backbone.name)
    other = save_adapters(folder / "for_small.safetensors", adapters, "sam2.1_hiera_small")
    return good, other


def _mask_after(qtbot, dock, *, replacing=None):
    """The preview once the dock is idle and showing a mask (another one than ``replacing``)."""
    qtbot.waitUntil(lambda: not dock.busy and "mask of" in dock.status.text() and dock.session.preview is not None
                    and dock.session.preview is not replacing, timeout=120_000)
    return dock.session.preview


def _fresh(backbone) -> RPSAM2:
    """The same SAM2 with an empty cache of its own: whatever it gives was computed with its own weights."""
    return RPSAM2(backbone, cache=EmbeddingCache(1 << 28))


def test_loaded_adapters_change_the_click_docks_mask_and_a_wrong_file_is_refused(
        make_napari_viewer, qtbot, model, adapter_files):
    good, other = adapter_files
    image, labels = make_instrument_stack(1)
    plane = image[0].mean(-1).astype(np.uint8)
    viewer, dock = open_click_dock(qtbot, make_napari_viewer, model, plane, name="frame")
    layer = viewer.layers["frame"]
    point = inside(labels[0], 1)
    click_canvas(qtbot, viewer, clicks_layer(viewer), point)
    plain = _mask_after(qtbot, dock)
    clicks = np.asarray(clicks_layer(viewer).data)
    mapping = dict(contrast_limits=layer.contrast_limits, gamma=layer.gamma)
    np.testing.assert_array_equal(plain.mask, _fresh(model.backbone).segment(plane, clicks, [1], True, **mapping).mask)

    # the person types the SAM2 weights and the adapter file and presses Load model
    type_into(qtbot, dock.settings.weights, "random")
    type_into(qtbot, dock.settings.adapters, str(good))
    click(qtbot, dock.settings.load_button)
    workspace = workspace_for(viewer)
    qtbot.waitUntil(lambda: workspace.model is not None and workspace.model.backbone.adapters is not None,
                    timeout=120_000)
    assert "with adapters" in dock.settings.status.text()
    tuned = _mask_after(qtbot, dock, replacing=plain)  # the dock segments again with the new model
    backbone = workspace.model.backbone
    assert "|adapters:" in backbone.weights_signature
    assert not np.array_equal(tuned.mask, plain.mask), "the adapters changed nothing on screen"
    # the preview was made with the adapters throughout: no embedding of the plain SAM2 was reused
    np.testing.assert_array_equal(tuned.mask, _fresh(backbone).segment(plane, clicks, [1], True, **mapping).mask)

    # adapters made for another backbone: one line naming both, nothing loaded, the model stays
    type_into(qtbot, dock.settings.adapters, str(other))
    click(qtbot, dock.settings.load_button)
    qtbot.waitUntil(lambda: "Could not load the model" in dock.settings.status.text(), timeout=30_000)
    message = dock.settings.status.text()
    assert "sam2.1_hiera_small" in message and "sam2.1_hiera_tiny" in message and "\n" not in message
    assert workspace.model.backbone is backbone


def test_adapters_hooked_onto_the_model_in_use_reach_every_dock_and_the_load_model_form(
        make_napari_viewer, qtbot, model, adapter_files):
    """What the training dock's *Use the adapters* does: ``Workspace.load_adapters`` on the model in use."""
    from napari_rpsam2.model.checkpoint import CheckpointError

    good, other = adapter_files
    image, labels = make_instrument_stack(1)
    plane = image[0].mean(-1).astype(np.uint8)
    viewer, dock = open_click_dock(qtbot, make_napari_viewer, model, plane, name="frame")
    layer = viewer.layers["frame"]
    click_canvas(qtbot, viewer, clicks_layer(viewer), inside(labels[0], 1))
    plain = _mask_after(qtbot, dock)
    clicks = np.asarray(clicks_layer(viewer).data)
    workspace = workspace_for(viewer)
    heard = []
    workspace.events.model_changed.connect(heard.append)
    plain_signature = workspace.model.backbone.weights_signature
    try:
        with pytest.raises(CheckpointError, match="sam2.1_hiera_small"):
            workspace.load_adapters(other)  # made for another backbone: refused, nothing changes
        assert workspace.model.backbone.adapters is None and not heard and dock.settings.adapters.text() == ""
        workspace.load_adapters(good)
        assert heard == [workspace.model]  # every dock hears of the new model
        assert dock.settings.adapters.text() == str(good) and "with adapters" in dock.settings.status.text()
        assert workspace.model.backbone.weights_signature != plain_signature  # the cache keys change
        tuned = _mask_after(qtbot, dock, replacing=plain)  # the click dock segments again, with the adapters
        assert not np.array_equal(tuned.mask, plain.mask)
        mapping = dict(contrast_limits=layer.contrast_limits, gamma=layer.gamma)
        np.testing.assert_array_equal(
            tuned.mask, _fresh(workspace.model.backbone).segment(plane, clicks, [1], True, **mapping).mask)
    finally:
        model.backbone.use_adapters(None)  # the session's backbone is shared with other tests
