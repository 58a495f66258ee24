"""Screenshots of the "Automatic segmentation" dock, driven by real input.

Run: ``xvfb-run -a python docs/make_autoseg_screenshots.py``.

A 1280×800 window on a generated stack of discs and squares on noise (24
slices, 128²) with its labels.  The class table is filled and typed in,
the generator trains for 40 epochs (``autoseg_widget.png``: the plot), its
boxes are proposed on one slice and one box is deleted with the select tool
and the Delete key (``autoseg_boxes.png``), then the remaining boxes are
segmented with the generator alone (``autoseg_refined.png``).  SAM2 has random
weights here (no network), so its refinement would show nothing useful.
"""
import os
import pathlib

os.environ.setdefault("NAPARI_RPSAM2_IMAGE_SIZE", "256")  # random SAM2 either way: keep it quick

import napari  # noqa: E402
import numpy as np  # noqa: E402
from napari.settings import get_settings  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from _gui_script import BOT, click, gui_forms, grab, key, press, settle, wait  # noqa: E402
from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2._widgets._autoseg_boxes import boxes_layer, reviewed_boxes  # noqa: E402
from napari_rpsam2._widgets._workspace import workspace_for  # noqa: E402
from shapes_data import discs_and_squares  # noqa: E402  (tests/ is on the path through _gui_script)

IMAGES = pathlib.Path(__file__).resolve().parent / "images"


def scroll_to(dock, widget) -> None:
    """Scroll the dock so ``widget`` is in view (as a person scrolls the dock)."""
    from qtpy.QtWidgets import QScrollArea

    dock.findChild(QScrollArea).ensureWidgetVisible(widget, 0, 40)  # as a person scrolls the dock
    settle()


get_settings().application.gui_notification_level = "none"
viewer = napari.Viewer(show=True)
images, classes = discs_and_squares(24, size=128, seed=5)
image = viewer.add_image(images, name="shapes")
viewer.add_labels(classes, name="annotation", opacity=0.4)
workspace_for(viewer).set_model(RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0))
_, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Automatic segmentation")
viewer.window._qt_window.resize(1280, 800)
viewer.reset_view()
wait(lambda: True)

press(dock.classes_button)
gui_forms.type_into_cell(BOT, dock.classes, 0, 1, "disc")
gui_forms.type_into_cell(BOT, dock.classes, 1, 1, "square")
gui_forms.type_into(BOT, dock.train_form.epochs, "40")
gui_forms.choose(BOT, dock.train_form.input_size, "64")
press(dock.train_button)
wait(lambda: not dock.running)
print(dock.status.text())
scroll_to(dock, dock.plot)
viewer.reset_view()
grab(viewer, IMAGES / "autoseg_widget.png")

viewer.layers["annotation"].visible = False
while viewer.dims.current_step[0] > 2:
    key(viewer, Qt.Key.Key_Left)
press(dock.propose_button)
wait(lambda: not dock.running)
print(dock.status.text())
layer = boxes_layer(viewer, image)
boxes = reviewed_boxes(layer, dock.generator.classes)
smallest = int(np.argmin([(b.box[2] - b.box[0]) * (b.box[3] - b.box[1]) for b in boxes]))
press(viewer.window._qt_viewer.controls.widgets[layer].select_button)
b = boxes[smallest].box
click(viewer, layer, [2, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
key(viewer, "Delete")
scroll_to(dock, dock.refine_button)
viewer.reset_view()
grab(viewer, IMAGES / "autoseg_boxes.png")

gui_forms.choose(BOT, dock.segment_form.stages, "Generator only (no SAM2)")  # random SAM2 would say nothing
press(dock.refine_button)
wait(lambda: not dock.running)
print(dock.status.text())
scroll_to(dock, dock.status)
grab(viewer, IMAGES / "autoseg_refined.png")
viewer.close()
