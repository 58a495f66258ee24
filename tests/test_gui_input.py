"""The shared real-input helpers land where they say (a wrong mapping would make every GUI test lie)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtCore import Qt  # noqa: E402

from gui_input import click_canvas, press_key  # noqa: E402


def test_click_lands_on_the_data_point_and_key_reaches_the_viewer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((3, 60, 80), np.uint8), scale=(1, 2, 2), translate=(0, 5, -7))
    points = viewer.add_points(np.zeros((0, 3)), ndim=3, scale=(1, 2, 2), translate=(0, 5, -7))
    viewer.dims.set_current_step(0, 2)
    points.mode = "add"
    click_canvas(qtbot, viewer, points, (40.0, 17.0))
    np.testing.assert_allclose(points.data, [[2.0, 40.0, 17.0]], atol=0.6)  # within a screen pixel
    seen = []
    viewer.bind_key("Shift-K", lambda v: seen.append(True), overwrite=True)
    press_key(qtbot, viewer, "K", Qt.KeyboardModifier.ShiftModifier)
    assert seen == [True]
