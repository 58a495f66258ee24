"""Screenshots of "One-shot segmentation", one per method: ``xvfb-run -a python docs/make_oneshot_screenshots.py``.

A 1280×800 window on the sample stack with the objects painted on slice 0
only.  For each method the script picks it in the dock, presses Run, steps to
slice 1 with the arrow key and grabs the window (generated clicks: green
positive, red negative), then presses Undo.  Random SAM2 weights (no network
here): the masks mean nothing, the clicks come from random features.
"""
import pathlib
import sys
import time

import napari
import numpy as np
from napari.settings import get_settings
from qtpy.QtCore import Qt

from _gui_script import grab, key, press, wait
from napari_rpsam2 import RPSAM2
from napari_rpsam2._widgets._workspace import workspace_for

OUT = pathlib.Path(__file__).resolve().parent / "images"
WARP_STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 20

get_settings().application.gui_notification_level = "none"
viewer = napari.Viewer(show=True)
viewer.open_sample("napari-rpsam2", "instruments")
image, sample_labels = viewer.layers[0], viewer.layers[1]
painted = np.zeros_like(sample_labels.data)
painted[0] = sample_labels.data[0]  # the person annotated slice 0 only
viewer.layers.remove(sample_labels)
annotation = viewer.add_labels(painted, name="annotation (slice 0)")
viewer.window._qt_window.resize(1280, 800)
workspace_for(viewer).set_model(RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0))
_, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "One-shot segmentation")
dock.image_picker.set_layer(image)
dock.labels_picker.set_layer(annotation)
dock.form.warp_steps.value = WARP_STEPS
dock.form.rounds.value = 0  # random SAM2 weights: pseudo-labels would be noise
wait(lambda: True)  # the window and the dock get their final sizes
viewer.reset_view()
wait(lambda: True)
for index, (text, name) in enumerate([("PerSAM (baseline)", "persam"), ("P²SAM (part-aware)", "p2sam"),
                                      ("Med-PerSAM (warping)", "medpersam")]):
    viewer.dims.set_current_step(0, 0)
    dock.method.native.setCurrentIndex(index)
    began = time.time()
    press(dock.run_button)
    wait(lambda: not dock.running, timeout=1800)
    seconds = time.time() - began
    key(viewer, Qt.Key.Key_Right)  # to slice 1
    path = OUT / f"oneshot_{name}.png"
    grab(viewer, path)
    print(f"{name}: {seconds:.0f} s: {dock.status.text()}")
    press(dock.undo_button)
    wait(lambda: True)
viewer.close()
