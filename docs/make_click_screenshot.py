"""Screenshot of the click dock in use, driven by real canvas events: ``xvfb-run -a python docs/make_click_screenshot.py``.

A 1280×800 window on the sample stack: one object committed, then a box drawn
around the next object (Draw box and a drag), two positive clicks and one
negative click on it, with the refined clicks and their arrows.  Random SAM2
weights (no network here): the masks mean nothing.
"""
import pathlib

import napari
import torch
from napari.settings import get_settings

from _gui_script import click, drag, grab, press, wait
from napari_rpsam2 import RPSAM2
from napari_rpsam2._widgets._views import plugin_layers
from napari_rpsam2._widgets._workspace import workspace_for
from napari_rpsam2.model import ShiftBlock, ShiftBlockConfig

OUT = pathlib.Path(__file__).resolve().parent / "images" / "click_widget.png"

get_settings().application.gui_notification_level = "none"
viewer = napari.Viewer(show=True)
viewer.open_sample("napari-rpsam2", "instruments")
image, labels = viewer.layers[0], viewer.layers[1]
labels.visible = False
_, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
viewer.window._qt_window.resize(1280, 800)
dock.settings.weights.setText("random")
torch.manual_seed(3)
block = ShiftBlock(ShiftBlockConfig())
with torch.no_grad():  # a block that moves clicks, so the arrows are visible
    block.offset_head.weight.normal_(0, 0.05)
base = RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0)
workspace_for(viewer).set_model(RPSAM2(base.backbone, block))
wait(lambda: not dock.embedder.running)
viewer.reset_view()
wait(lambda: True)
prompts = dock.layers()["prompts"]
click(viewer, prompts, [0, 80.0, 260.0])  # the knife: commit it
wait(lambda: dock.preview_mask() is not None and not dock.busy)
press(dock.commit_button)
press(dock.box_button)
(box_layer,) = plugin_layers(viewer, "click box")
drag(viewer, box_layer, [0, 110.0, 20.0], [0, 230.0, 150.0])  # around the forceps
wait(lambda: dock.preview_mask() is not None and not dock.busy)
click(viewer, prompts, [0, 200.0, 50.0])
click(viewer, prompts, [0, 150.0, 110.0])
click(viewer, prompts, [0, 40.0, 60.0], shift=True)
wait(lambda: dock.preview_mask() is not None and not dock.busy)
grab(viewer, OUT)
print(dock.status.text())
viewer.close()
