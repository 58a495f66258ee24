"""Screenshot of the Propagate dock after a run, driven by real canvas events: ``xvfb-run -a python docs/make_propagate_screenshot.py``.

A 1280×800 window on the sample stack: the knife clicked and committed on slice
0 with the click dock, a box dragged around the forceps, then Propagate; the
last slice is shown.  Random SAM2 weights (no network here): the masks mean nothing.
"""
import pathlib

import napari
from napari.settings import get_settings

from _gui_script import click, drag, grab, press, wait
from napari_rpsam2 import RPSAM2
from napari_rpsam2._widgets._views import plugin_layers
from napari_rpsam2._widgets._workspace import workspace_for

OUT = pathlib.Path(__file__).resolve().parent / "images" / "propagate_widget.png"

get_settings().application.gui_notification_level = "none"
viewer = napari.Viewer(show=True)
viewer.open_sample("napari-rpsam2", "instruments")
image, truth = viewer.layers[0], viewer.layers[1]
truth.visible = False
_, clicks = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
viewer.window._qt_window.resize(1280, 800)
workspace_for(viewer).set_model(RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0))
viewer.reset_view()
viewer.dims.set_current_step(0, 0)
wait(lambda: True)
click(viewer, clicks.layers()["prompts"], [0, 80.0, 260.0])  # the knife: commit it
wait(lambda: clicks.preview_mask() is not None and not clicks.busy)
press(clicks.commit_button)
objects = clicks.target_picker.layer()
viewer.window.remove_dock_widget(clicks)
_, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Propagate through stack")
dock.source_picker.set_layer(objects)  # the committed knife...
dock.target_picker.set_layer(objects)  # ...and the results in the same layer
press(dock.draw_button)
(boxes,) = plugin_layers(viewer, "boxes")
drag(viewer, boxes, [0, 110.0, 20.0], [0, 230.0, 150.0])  # around the forceps
wait(lambda: True)
press(dock.run_button)
wait(lambda: not dock.running)
viewer.layers.selection.active = objects
viewer.dims.set_current_step(0, 2)
wait(lambda: True)
grab(viewer, OUT)
print(dock.status.text())
viewer.close()
