"""napari opens videos, volumes, zarr and frame folders through the plugin's reader and saves labels back."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

import dask.array as da
import nibabel as nib
from io_samples import AFFINE, make_dicom_series, make_jpeg_folder, make_nifti, make_video, make_zarr

from napari_rpsam2 import io
from napari_rpsam2.io import video as video_module

PLUGIN = "napari-rpsam2"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gui_io")
    return {"video": make_video(root / "clip.mp4"), "nifti": make_nifti(root / "ct.nii.gz"),
            "dicom": make_dicom_series(root / "series")[0], "zarr": make_zarr(root / "cells.zarr")[0],
            "jpeg": make_jpeg_folder(root / "jpeg")}


@pytest.fixture
def decoded(monkeypatch):
    """Frames the video reader decodes (to see that opening is lazy)."""
    seen: list[int] = []
    original = video_module.VideoFrames._decode

    def counting(self, i):
        seen.append(i)
        return original(self, i)

    monkeypatch.setattr(video_module.VideoFrames, "_decode", counting)
    return seen


def test_a_video_opens_lazily_one_frame_per_chunk(make_napari_viewer, files, decoded):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(files["video"]), plugin=PLUGIN)
    assert layer.rgb and layer.data.shape == (40, 48, 64, 3) and isinstance(layer.data, da.Array)
    assert layer.data.chunksize == (1, 48, 64, 3)
    assert len(set(decoded)) <= 2, f"opening decoded frames {sorted(set(decoded))}"
    viewer.dims.set_current_step(0, 33)
    frame = np.asarray(layer.data[33])
    truth = io.VideoFrames(files["video"])[33]
    assert np.array_equal(frame, truth) and len(set(decoded)) <= 4
    assert layer.metadata["napari_rpsam2_io"]["names"][33] == "frame_000033"


@pytest.mark.parametrize("kind, shape, scale", [("nifti", (6, 32, 40), (2.5, 0.7, 0.9)),
                                                ("dicom", (5, 24, 20), (3.0, 0.8, 0.6))])
def test_a_volume_opens_with_its_spacing_and_ct_window(make_napari_viewer, files, kind, shape, scale):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(files[kind]), plugin=PLUGIN)
    assert layer.data.shape == shape and np.allclose(layer.scale, scale)
    assert tuple(layer.contrast_limits) == (-160.0, 240.0)  # soft tissue (40, 400)


def test_zarr_and_a_jpeg_folder_open_through_the_plugin(make_napari_viewer, files):
    viewer = make_napari_viewer()
    (cells,) = viewer.open(str(files["zarr"]), plugin=PLUGIN)
    assert cells.data.shape == (6, 30, 40) and tuple(cells.contrast_limits) == (0.0, 3999.0)
    (frames,) = viewer.open(str(files["jpeg"]), plugin=PLUGIN)
    assert frames.data.shape == (12, 48, 64, 3) and frames.metadata["napari_rpsam2_io"]["names"][9] == "10"


def test_labels_saved_as_nifti_png_folder_and_tiff(make_napari_viewer, files, tmp_path):
    import tifffile

    viewer = make_napari_viewer()
    (ct,) = viewer.open(str(files["nifti"]), plugin=PLUGIN)
    painted = np.zeros(ct.data.shape, np.uint8)
    painted[2, 10:20, 12:22] = 4
    labels = viewer.add_labels(painted, scale=ct.scale, metadata=dict(ct.metadata), name="organs")
    viewer.layers.selection.active = labels
    viewer.layers.save(str(tmp_path / "organs.nii.gz"), selected=True, plugin=PLUGIN)
    written = nib.load(str(tmp_path / "organs.nii.gz"))
    assert np.allclose(written.affine, AFFINE) and np.asarray(written.dataobj)[12:22, 10:20, 2].min() == 4
    viewer.layers.save(str(tmp_path / "organs.tif"), selected=True, plugin=PLUGIN)
    assert np.array_equal(tifffile.imread(tmp_path / "organs.tif"), painted)
    (clip,) = viewer.open(str(files["video"]), plugin=PLUGIN)
    masks = viewer.add_labels(np.zeros(clip.data.shape[:3], np.uint8), metadata=dict(clip.metadata))
    viewer.layers.selection.active = masks
    viewer.layers.save(str(tmp_path / "masks.png"), selected=True, plugin=PLUGIN)
    folder = tmp_path / "masks"
    assert len(list(folder.glob("frame_0000*.png"))) == 40
    assert json.loads((folder / "rpsam2.json").read_text())["source"]["kind"] == "video"
