"""The click dock makes its layers for the image a person works on, not for every image the picker passes.

Stepping through the Image picker with the keyboard used to leave four plugin
layers for every image passed over.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::UserWarning")]

from gui_forms import choose, tick  # noqa: E402
from gui_input import click_canvas  # noqa: E402
from gui_scenes import clicks_layer, open_click_dock  # noqa: E402
from napari_rpsam2._widgets._views import METADATA_KEY  # noqa: E402

TIMEOUT = 120_000


def _layers_of(viewer, image) -> list[str]:
    return sorted(ly.metadata[METADATA_KEY]["role"] for ly in viewer.layers
                  if ly.metadata.get(METADATA_KEY, {}).get("image") == image.unique_id)


def test_images_passed_over_in_the_picker_keep_no_plugin_layers(make_napari_viewer, qtbot, model):
    rng = np.random.default_rng(0)
    viewer, dock = open_click_dock(qtbot, make_napari_viewer, model, rng.random((96, 96)), name="a")
    tick(qtbot, dock.precompute_box)  # no background embedding: only the clicked image is encoded
    a = viewer.layers["a"]
    roles = _layers_of(viewer, a)
    assert len(roles) == 4
    # the person clicks on image a: it is worked on, its layers stay
    click_canvas(qtbot, viewer, clicks_layer(viewer), (48, 48))
    qtbot.waitUntil(lambda: not dock.busy and "mask of" in dock.status.text(), timeout=TIMEOUT)
    b = viewer.add_image(rng.random((96, 96)), name="b")
    c = viewer.add_image(rng.random((96, 96)), name="c")
    assert dock.image_picker.layer() is a
    # then steps down through the picker with the keyboard, over b, to c
    choose(qtbot, dock.image_picker, "c")
    assert dock.image_picker.layer() is c
    assert _layers_of(viewer, a) == roles, "the worked-on image keeps its clicks and preview layers"
    assert _layers_of(viewer, b) == [], "an image passed over gets no plugin layers"
    assert _layers_of(viewer, c) == roles
    # back to b and away again without working on it: still nothing left for b
    choose(qtbot, dock.image_picker, "b")
    assert _layers_of(viewer, b) == roles and _layers_of(viewer, c) == []
    choose(qtbot, dock.image_picker, "a")
    assert _layers_of(viewer, b) == []
    assert len(clicks_layer_of(viewer, a).data) == 1


def clicks_layer_of(viewer, image):
    (layer,) = [ly for ly in viewer.layers if ly.metadata.get(METADATA_KEY, {}).get("image") == image.unique_id
                and ly.metadata[METADATA_KEY]["role"] == "prompts"]
    return layer
