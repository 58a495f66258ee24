"""Screenshot of the Propagate dock after a run, driven by real canvas events: ``xvfb-run -a python docs/make_propagate_screenshot.py``.

A 1280×800 window on the sample stack: the knife clicked and committed on slice
0 with the click dock, a box dragged around the forceps, then Propagate; the
last slice is shown.  Random SAM2 weights (no network here): the masks mean nothing.
"""
import pathlib
import time

import napari
import numpy as np
from napari.settings import get_settings
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

from napari_rpsam2 import RPSAM2
from napari_rpsam2._widgets._views import plugin_layers
from napari_rpsam2._widgets._workspace import workspace_for

OUT = pathlib.Path(__file__).resolve().parent / "images" / "propagate_widget.png"


def wait(cond, timeout=600):
    end = time.time() + timeout
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.time() > end:
            raise TimeoutError
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def canvas_pos(layer, data):
    world = layer.data_to_world(np.asarray(data, float))
    x, y = viewer.window._qt_viewer.canvas.view.scene.transform.map([world[-1], world[-2], 0, 1])[:2]
    return float(x), float(y)


def click(layer, data):
    x, y = canvas_pos(layer, data)
    widget, pos = viewer.window._qt_viewer.canvas.native, QPoint(round(x), round(y))
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)


def drag(layer, start, end, steps=8):
    widget = viewer.window._qt_viewer.canvas.native
    (x0, y0), (x1, y1) = canvas_pos(layer, start), canvas_pos(layer, end)
    left, none, mods = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier

    def send(kind, x, y, button, buttons):
        pos = QPointF(x, y)
        QApplication.sendEvent(widget, QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, mods))

    send(QMouseEvent.Type.MouseMove, x0, y0, none, none)
    send(QMouseEvent.Type.MouseButtonPress, x0, y0, left, left)
    for k in range(1, steps + 1):
        send(QMouseEvent.Type.MouseMove, x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps, none, left)
        app.processEvents()
    send(QMouseEvent.Type.MouseButtonRelease, x1, y1, left, none)


get_settings().application.gui_notification_level = "none"
viewer = napari.Viewer(show=True)
app = QApplication.instance()
viewer.open_sample("napari-rpsam2", "instruments")
image, truth = viewer.layers[0], viewer.layers[1]
truth.visible = False
_, clicks = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
viewer.window._qt_window.resize(1280, 800)
workspace_for(viewer).set_model(RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0))
viewer.reset_view()
viewer.dims.set_current_step(0, 0)
wait(lambda: True)
click(clicks.layers()["prompts"], [0, 80.0, 260.0])  # the knife: commit it
wait(lambda: clicks.preview_mask() is not None and not clicks.busy)
QTest.mouseClick(clicks.commit_button, Qt.MouseButton.LeftButton)
objects = clicks.target_picker.layer()
viewer.window.remove_dock_widget(clicks)
_, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Propagate through stack")
dock.target_picker.set_layer(objects)
QTest.mouseClick(dock.draw_button, Qt.MouseButton.LeftButton)
(boxes,) = plugin_layers(viewer, "boxes")
drag(boxes, [0, 110.0, 20.0], [0, 230.0, 150.0])  # around the forceps
wait(lambda: True)
QTest.mouseClick(dock.run_button, Qt.MouseButton.LeftButton)
wait(lambda: not dock.running)
viewer.layers.selection.active = objects
viewer.dims.set_current_step(0, 2)
wait(lambda: True)
viewer.window._qt_window.grab().save(str(OUT))
print("wrote", OUT, "|", dock.status.text())
viewer.close()
