"""Screenshots of the heatmap and training docks in a 1280×800 window: ``xvfb-run -a -s "-screen 0 1280x800x24" python docs/make_screenshots_heatmap_training.py``.

Driven like a person: values typed into the fields, buttons clicked.  Uses
random SAM2 weights (no network here), so the Dice values mean nothing; the
docks are what is shown.  Also prints the window width with all three docks.
"""
from pathlib import Path

import napari
import torch
from napari.settings import get_settings

from _gui_script import press, settle, type_into, wait
from _gui_script import grab as grab_window
from napari_rpsam2 import RPSAM2
from napari_rpsam2._widgets._workspace import workspace_for

OUT = Path(__file__).resolve().parent / "images"
torch.set_num_threads(2)


def grab(name):
    viewer.reset_view()
    grab_window(viewer, OUT / name)


get_settings().application.gui_notification_level = "none"
viewer = napari.Viewer(show=True)
window = viewer.window._qt_window
window.resize(1280, 800)
viewer.open_sample("napari-rpsam2", "instruments")
image, labels = viewer.layers[0], viewer.layers[1]
workspace = workspace_for(viewer)
workspace.set_model(RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0))

docks = {}
for name in ("Click segmentation", "Click-sensitivity heatmap", "Train shift block"):
    docks[name] = viewer.window.add_plugin_dock_widget("napari-rpsam2", name)
settle()
print(f"window with three docks: {window.width()}×{window.height()} px", flush=True)
for name in ("Click segmentation", "Click-sensitivity heatmap"):
    press(docks[name][0].title.close_button)
settle()

# training: three short epochs on the sample stack
train = docks["Train shift block"][1]
train.image_picker.set_layer(image)
train.labels_picker.set_layer(labels)
press(train.params_button)  # show the hyper-parameters
for field, text in ((train.form.epochs, "3"), (train.form.lr, "0.001"), (train.form.clicks_per_object, "2"),
                    (train.form.grid_stride, "24"), (train.form.eval_clicks, "2")):
    type_into(field, text)
Path("out").mkdir(exist_ok=True)
type_into(train.out, "out/rpsam2-demo.safetensors")  # relative: no machine path in the picture
press(train.params_button)  # fold them again: progress and plot in view
press(train.start_button)
wait(lambda: not train.running)
print(train.status.text(), flush=True)
grab("training_widget.png")
press(train.use_button)
settle()
print(train.status.text(), flush=True)

# heatmap of object 1 on slice 0 with the trained block: SAM2 and RP-SAM2 maps
press(docks["Train shift block"][0].title.close_button)
dock_widget, heat = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click-sensitivity heatmap")
labels.visible = False
viewer.dims.set_current_step(0, 0)
heat.image_picker.set_layer(image)
heat.labels_picker.set_layer(labels)
type_into(heat.object_id, "1")
type_into(heat.stride, "6")
press(heat.run_button)
wait(lambda: not heat.running)
print(heat.status.text(), flush=True)
grab("heatmap_widget.png")
viewer.close()
