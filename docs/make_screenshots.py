"""Take the docs screenshots on the sample data: ``xvfb-run -a python docs/make_screenshots.py``.

Uses random SAM2 weights (the development machines have no network), so the
masks and Dice values in the pictures mean nothing; the widgets are what is shown.
"""
import warnings
warnings.filterwarnings("ignore", message=".*PyQt5.*")
import time
import numpy as np
import torch
import napari
from qtpy.QtWidgets import QApplication
from napari_rpsam2 import RPSAM2
from napari_rpsam2.model import ShiftBlock, ShiftBlockConfig

OUT = str(__import__("pathlib").Path(__file__).resolve().parent / "images") + "/"
torch.set_num_threads(2)


def wait(cond, timeout=600):
    t = time.time()
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.time() - t > timeout:
            raise TimeoutError
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def grab(viewer, name):
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    img = viewer.screenshot(canvas_only=False, flash=False)
    import imageio.v3 as iio
    iio.imwrite(OUT + name, img)
    print("wrote", name, img.shape, flush=True)


from napari.settings import get_settings
get_settings().application.gui_notification_level = "none"
model = RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0)
viewer = napari.Viewer(show=True)
app = QApplication.instance()
viewer.window._qt_window.resize(1500, 950)
viewer.open_sample("napari-rpsam2", "instruments")
image, labels = viewer.layers[0], viewer.layers[1]
labels.visible = False

# 1. click widget: a stack, two positive clicks and a negative one on slice 0
_, click = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation (RP-SAM2)")
click.settings.weights.setText("random")
# a shift block that moves clicks, so the refined points and arrows are visible (random weights)
torch.manual_seed(3)
block = ShiftBlock(ShiftBlockConfig())
with torch.no_grad():
    block.offset_head.weight.normal_(0, 0.05)
demo = RPSAM2(model.backbone, block, cache=model.cache)
click.set_model(demo)
viewer.dims.set_current_step(0, 0)
click.image_picker.set_layer(image)
wait(lambda: not click.embedder.running)
prompts = click.layers()["prompts"]
prompts.data = np.array([[0, 200.0, 50.0], [0, 150.0, 110.0]])
click._on_press(prompts, type("E", (), {"modifiers": ("Shift",)})())
prompts.add([0, 60.0, 250.0])
wait(lambda: click.preview_mask() is not None and not click.busy)
grab(viewer, "click_widget.png")
click.commit()
wait(lambda: True)

# the heatmap and training docks: docs/make_screenshots_heatmap_training.py
viewer.close()
