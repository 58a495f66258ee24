"""Every ``--images`` takes videos, volumes, zarr and frame folders; labels come back in the input's form."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from io_samples import AFFINE, ct_volume, make_dicom_series, make_jpeg_folder, make_nifti, make_video, make_zarr

from napari_rpsam2 import cli, io

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_io")
    return {"video": make_video(root / "clip.mp4"), "nifti": make_nifti(root / "ct.nii.gz"),
            "dicom": make_dicom_series(root / "series")[0], "zarr": make_zarr(root / "cells.zarr")[0],
            "jpeg": make_jpeg_folder(root / "jpeg")}


def _run(capsys, args, model):
    code = cli.main(args, model=model)
    out, err = capsys.readouterr()
    return code, out, err


def _prompts(tmp_path, slice_name, row, col):
    path = tmp_path / "p.csv"
    path.write_text(f"slice,object,row,col\n{slice_name},1,{row},{col}\n")
    return str(path)


def test_propagate_a_video_writes_one_png_per_frame(capsys, model, inputs, tmp_path):
    out = tmp_path / "masks"
    code, stdout, err = _run(capsys, ["propagate", "--images", str(inputs["video"]), "--out", str(out),
                                      "--prompts", _prompts(tmp_path, "frame_000020", 20, 30),
                                      "--start", "20", "--stop", "21", "--quiet"], model)
    assert code == 0, err
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 40 and pngs[0] == "frame_000000.png" and pngs[-1] == "frame_000039.png"
    assert "through 1 of 40 slices" in stdout
    assert io.read_label_plane(out / "frame_000020.png").shape == (48, 64)
    assert not io.read_label_plane(out / "frame_000000.png").any()  # outside the range: untouched
    meta = json.loads((out / "rpsam2.json").read_text())
    assert meta["contrast"] == {"rule": "dtype range", "limits": [0.0, 255.0]} and meta["source"]["kind"] == "video"


@pytest.mark.parametrize("kind", ["nifti", "dicom"])
def test_propagate_a_volume_writes_nifti_with_its_affine(capsys, model, inputs, tmp_path, kind):
    source = io.open_images(inputs[kind])
    out = tmp_path / "labels.nii.gz"
    code, _, err = _run(capsys, ["propagate", "--images", str(inputs[kind]), "--out", str(out),
                                 "--prompts", _prompts(tmp_path, 1, 12, 9), "--window", "bone",
                                 "--start", "1", "--stop", "2", "--quiet"], model)
    assert code == 0, err
    written = nib.load(str(out))
    assert np.allclose(written.affine, source.affine)
    assert written.shape == tuple(reversed(source.shape))
    if kind == "nifti":
        assert np.allclose(written.affine, AFFINE) and written.shape == ct_volume().shape
    record = json.loads(written.header.extensions[0].get_content())
    assert record["contrast"]["window"]["name"] == "bone" and record["contrast"]["limits"] == [-500.0, 1300.0]


def test_propagate_zarr_and_jpeg_folder(capsys, model, inputs, tmp_path):
    out = tmp_path / "z.tif"
    code, _, err = _run(capsys, ["propagate", "--images", str(inputs["zarr"]), "--out", str(out), "--prompts",
                                 _prompts(tmp_path, "cells_0002", 10, 10), "--start", "2", "--stop", "3",
                                 "--quiet"], model)
    assert code == 0, err
    assert tifffile.imread(out).shape == (6, 30, 40)
    folder = tmp_path / "jpeg_labels"
    code, _, err = _run(capsys, ["propagate", "--images", str(inputs["jpeg"]), "--out", str(folder), "--prompts",
                                 _prompts(tmp_path, "10.jpg", 20, 30), "--start", "9", "--stop", "10",
                                 "--quiet"], model)
    assert code == 0, err
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted(str(i) for i in range(1, 13))


@pytest.mark.parametrize("command", ["propagate", "embed", "train", "evaluate", "oneshot", "oneshot-eval"])
def test_a_bad_input_is_one_line_and_exit_2_before_any_model_work(capsys, tmp_path, command):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    extra = {"propagate": ["--prompts", str(bad), "--out", str(tmp_path / "o.tif")],
             "embed": ["--cache", str(tmp_path / "cache")],
             "train": ["--labels", str(bad), "--out", str(tmp_path / "b.safetensors")],
             "evaluate": ["--labels", str(bad), "--out", str(tmp_path / "r.json")],
             "oneshot": ["--reference-image", str(bad), "--reference-labels", str(bad), "--method", "persam",
                         "--out", str(tmp_path / "o")],
             "oneshot-eval": ["--labels", str(bad), "--out", str(tmp_path / "r.json")]}[command]
    if command == "oneshot":  # its reference image is read first: give a valid one
        from PIL import Image

        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ref.png")
        extra[1] = extra[3] = str(tmp_path / "ref.png")
    code, _, err = _run(capsys, [command, "--images", str(bad), "--sam2-weights", "/nonexistent.pt", *extra,
                                 "--quiet"], None)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "not a supported input" in lines[0] or "labels" in lines[0], lines[0]


def test_evaluate_a_volume_with_nifti_labels(capsys, model, inputs, tmp_path):
    vol = ct_volume()
    labels = np.zeros(vol.shape, np.uint8)
    labels[..., 2][vol[..., 2] > 500] = 1  # one annotated slice: only it is read from the images
    nib.save(nib.Nifti1Image(labels, AFFINE), str(tmp_path / "labels.nii.gz"))
    out = tmp_path / "report.json"
    code, _, err = _run(capsys, ["evaluate", "--images", str(inputs["nifti"]), "--labels",
                                 str(tmp_path / "labels.nii.gz"), "--clicks", "1", "--out", str(out),
                                 "--quiet"], model)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["sam2"]["per_seed"] and report["run"]["images"].endswith("ct.nii.gz")


def test_labels_of_another_shape_are_refused(capsys, model, inputs, tmp_path):
    tifffile.imwrite(tmp_path / "l.tif", np.ones((3, 30, 40), np.uint8), photometric="minisblack")
    code, _, err = _run(capsys, ["evaluate", "--images", str(inputs["zarr"]), "--labels", str(tmp_path / "l.tif"),
                                 "--out", str(tmp_path / "r.json"), "--quiet"], model)
    assert code == 2 and "shape (3, 30, 40)" in err and "(6, 30, 40)" in err
