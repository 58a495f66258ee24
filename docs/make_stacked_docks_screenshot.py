"""All five docks stacked in a 1280×800 window, to check by eye: ``xvfb-run -a python docs/make_stacked_docks_screenshot.py [out.png]``.

The sample stack opened, the five docks opened from Plugins ▸ RP-SAM2 in
menu order, 'random' weights typed and Load model pressed in the click dock
(its status line is then at its longest).  Random SAM2 weights (no network here).
"""
import pathlib
import sys

import napari
from _gui_script import grab, press, type_into, wait
from napari.settings import get_settings

from napari_rpsam2._widgets._workspace import workspace_for

OUT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "stacked_docks.png")  # a check by eye, not in the docs
ENTRIES = ("Click segmentation", "Click-sensitivity heatmap", "Train shift block", "Propagate through stack",
           "One-shot segmentation")

get_settings().application.gui_notification_level = "none"
viewer = napari.Viewer(show=True)
viewer.window._qt_window.resize(1280, 800)
viewer.open_sample("napari-rpsam2", "instruments")
viewer.layers[1].visible = False
menu = next(a for a in viewer.window._qt_window.menuBar().actions() if a.text().replace("&", "") == "Plugins")
plugin = next(a for a in menu.menu().actions() if a.text().replace("&", "").startswith("RP-SAM2"))
for name in ENTRIES:
    next(a for a in plugin.menu().actions() if a.text().replace("&", "").startswith(name)).trigger()
    wait(lambda: True)
(click_dock,) = [w for w in viewer.window.dock_widgets.values() if type(w).__name__ == "ClickWidget"]
type_into(click_dock.settings.weights, "random")
press(click_dock.settings.load_button)
wait(lambda: workspace_for(viewer).model is not None)
viewer.reset_view()
grab(viewer, OUT)
wait(lambda: not click_dock.embedder.running)  # the background embedder done: closing while it runs aborts at exit
viewer.close()
