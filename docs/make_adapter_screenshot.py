"""Screenshot of the training dock's SAM2 adapters section after a short run.

Run: ``xvfb-run -a python docs/make_adapter_screenshot.py``.

A 1280×800 window on the sample stack: the section unfolded, three epochs
typed in, Fine-tune adapters pressed; the loss per epoch is in the plot.
Random SAM2 weights at a 256² input (no network here): the loss values mean
nothing; the controls are what is shown.
"""
import os
from pathlib import Path

os.environ.setdefault("NAPARI_RPSAM2_IMAGE_SIZE", "256")

import napari  # noqa: E402
from napari.settings import get_settings  # noqa: E402

from _gui_script import grab, press, settle, type_into, wait  # noqa: E402
from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402

OUT = Path(__file__).resolve().parent / "images" / "training_adapters.png"

get_settings().application.gui_notification_level = "none"
viewer = napari.Viewer(show=True)
viewer.window._qt_window.resize(1280, 800)
viewer.open_sample("napari-rpsam2", "instruments")
image, labels = viewer.layers[0], viewer.layers[1]
workspace_for(viewer).set_model(RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0))
_, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Train shift block")
dock.image_picker.set_layer(image)
dock.labels_picker.set_layer(labels)
section = dock.adapters
press(section.toggle)
type_into(section.form.epochs, "3")
Path("out").mkdir(exist_ok=True)
type_into(section.out, "out/rpsam2-adapters.safetensors")  # relative: no machine path in the picture
press(section.start_button)
wait(lambda: not dock.running)
print(dock.status.text(), flush=True)
settle()
viewer.reset_view()
grab(viewer, OUT)
viewer.close()
