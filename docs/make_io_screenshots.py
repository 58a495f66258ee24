"""Screenshots of a video and a CT volume opened through the plugin's reader: ``xvfb-run -a python docs/make_io_screenshots.py``.

Both inputs are generated here (a 600-frame 640×480 H.264 video of moving
shapes; a 60-slice CT-like phantom in Hounsfield units, 0.8 × 0.8 × 2.5 mm
voxels, as NIfTI), opened with ``viewer.open(path, plugin="napari-rpsam2")``
in a 1280×800 window, and grabbed (the CT on an axial slice, in the
soft-tissue window the reader chose).
"""
import pathlib
import sys
import tempfile

import napari
import nibabel as nib
import numpy as np
from napari.settings import get_settings

from _gui_script import grab, settle

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_long_stack import make_video  # noqa: E402

IMAGES = pathlib.Path(__file__).resolve().parent / "images"


def phantom(shape=(256, 256, 60)) -> np.ndarray:
    """A CT-like volume (X, Y, Z): air, a body, two lungs, a liver and a spine."""
    x, y, z = np.ogrid[:shape[0], :shape[1], :shape[2]]
    cx, cy = shape[0] / 2, shape[1] / 2
    vol = np.full(shape, -1000, np.int16)
    body = ((x - cx) / 110) ** 2 + ((y - cy) / 80) ** 2 < 1
    vol[np.broadcast_to(body, shape)] = 40
    for side in (-1, 1):
        lung = ((x - cx - side * 50) / 35) ** 2 + ((y - cy + 10) / 45) ** 2 + ((z - 40) / 30) ** 2 < 1
        vol[lung] = -820
    liver = ((x - cx + 40) / 45) ** 2 + ((y - cy) / 40) ** 2 + ((z - 12) / 14) ** 2 < 1
    vol[liver] = 65
    spine = ((x - cx) / 12) ** 2 + ((y - cy - 55) / 12) ** 2 < 1
    vol[np.broadcast_to(spine, shape)] = 700
    return vol


get_settings().application.gui_notification_level = "none"
with tempfile.TemporaryDirectory() as tmp:
    video = pathlib.Path(tmp) / "surgery.mp4"
    make_video(video, 600, 640, 480, 60)
    ct = pathlib.Path(tmp) / "ct.nii.gz"
    nib.save(nib.Nifti1Image(phantom(), np.diag([0.8, 0.8, 2.5, 1.0])), str(ct))

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.open(str(video), plugin="napari-rpsam2")
    viewer.reset_view()
    viewer.dims.set_current_step(0, 417)
    settle(1.0)
    grab(viewer, IMAGES / "io_video.png")
    viewer.layers.clear()

    (layer,) = viewer.open(str(ct), plugin="napari-rpsam2")
    viewer.reset_view()
    viewer.dims.set_current_step(0, 36)  # an axial slice through the lungs and the spine
    settle(1.0)
    grab(viewer, IMAGES / "io_ct.png")
    print("scale", tuple(layer.scale), "contrast limits", tuple(layer.contrast_limits))
    viewer.close()
