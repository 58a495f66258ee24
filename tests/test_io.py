"""The io package: lazy video with frame-exact seeking, volumes with spacing/affine/window, zarr, frames, writers."""

from __future__ import annotations

import json
import tracemalloc

import nibabel as nib
import numpy as np
import pytest
import tifffile
from io_samples import AFFINE, ct_volume, make_dicom_series, make_jpeg_folder, make_nifti, make_video, make_zarr

from napari_rpsam2 import io


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("io")
    return {"mp4": make_video(root / "clip.mp4"), "avi": make_video(root / "clip.avi", codec="mpeg4"),
            "nii": make_nifti(root / "ct.nii.gz"), "dicom": make_dicom_series(root / "series"),
            "zarr": make_zarr(root / "cells.zarr"), "jpeg": make_jpeg_folder(root / "jpeg"), "root": root}


def _decode_all(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_random_access_into_a_video_equals_sequential_decoding(samples, kind):
    truth = _decode_all(samples[kind])
    video = io.VideoFrames(samples[kind], cache_frames=2)
    assert len(video) == len(truth) == 40 and video.shape == (40, 48, 64, 3)
    order = np.random.default_rng(1).permutation(len(truth)).tolist() + [39, 0, 13, 12, 11]
    for i in order:
        assert np.array_equal(video[i], truth[i]), f"frame {i}"
    assert np.array_equal(video[-1], truth[-1])
    with pytest.raises(IndexError):
        video[40]


def test_reading_a_video_on_does_not_seek_again(samples):
    video = io.VideoFrames(samples["mp4"])
    video[20]
    seeks = video.seeks
    for i in range(21, 40):
        video[i]
    assert video.seeks == seeks


def test_a_video_is_never_held_whole_in_memory(tmp_path):
    path = make_video(tmp_path / "long.mp4", n=200, h=96, w=128)
    whole = 200 * 96 * 128 * 3
    tracemalloc.start()
    video = io.open_images(path).data
    for i in range(0, 200, 7):
        video[i]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(video) == 200
    assert peak < whole / 4, f"peak {peak} bytes while the decoded video is {whole}"


def test_nifti_keeps_spacing_affine_and_gets_a_ct_window(samples, tmp_path):
    source = io.open_images(samples["nii"])
    vol = ct_volume()
    assert source.kind == "nifti" and source.shape == (6, 32, 40)
    assert np.array_equal(source.data[2], vol[:, :, 2].T)
    assert np.allclose(source.affine, AFFINE) and np.allclose(source.spacing, (2.5, 0.7, 0.9))
    assert source.contrast_limits == (-160.0, 240.0) and source.meta["window"]["name"] == "soft-tissue"
    assert io.open_images(samples["nii"], window="lung").contrast_limits == (-1350.0, 150.0)
    assert io.open_images(samples["nii"], window="50,100").contrast_limits == (0.0, 100.0)
    labels = (np.asarray(source.data) > 500).astype(np.uint8)
    out = io.write_labels(labels, tmp_path / "bone.nii.gz", source)
    back = nib.load(str(out))
    assert np.allclose(back.affine, AFFINE) and back.shape == vol.shape
    assert np.array_equal(np.asarray(back.dataobj), (vol > 500).astype(np.uint8))
    record = json.loads(back.header.extensions[0].get_content())
    assert record["contrast"] == {"rule": "window", "limits": [-160.0, 240.0],
                                  "window": {"name": "soft-tissue", "level": 40.0, "width": 400.0}}


def test_bad_window_says_what_to_write(samples):
    with pytest.raises(io.InputError, match="preset .*level,width"):
        io.open_images(samples["nii"], window="dark")


def test_dicom_series_sorted_by_position_and_rescaled(samples, tmp_path):
    folder, hu = samples["dicom"]
    source = io.open_images(folder)
    assert source.kind == "dicom" and source.shape == (5, 24, 20)
    assert np.array_equal(np.stack([source.data[i] for i in range(5)]), hu)  # file names are shuffled
    assert source.spacing == (3.0, 0.8, 0.6)
    assert source.contrast_limits == (-160.0, 240.0)  # modality CT: soft tissue
    # voxel (col, row, slice) → RAS: LPS flipped on x and y
    assert np.allclose(source.affine @ [2, 3, 4, 1], [10 - 0.6 * 2, 20 - 0.8 * 3, 100 + 3.0 * 4, 1])
    out = io.write_labels((np.asarray(source.data) == 300).astype(np.uint8), tmp_path / "l.nii.gz", source)
    assert np.allclose(nib.load(str(out)).affine, source.affine)
    assert io.open_images(folder / sorted(p.name for p in folder.iterdir())[0]).kind == "dicom"  # one file: its series


def test_zarr_is_read_a_slice_at_a_time(samples, tmp_path):
    path, data = samples["zarr"]
    source = io.open_images(path)
    assert source.kind == "zarr" and source.shape == data.shape and not isinstance(source.data, np.ndarray)
    assert np.array_equal(source.data[3], data[3])
    assert source.contrast_limits == (0.0, 3999.0)
    out = io.write_labels(np.ones(data.shape, np.uint8), tmp_path / "z.tif", source)
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].shape == data.shape
        assert json.loads(tif.pages[0].description)["contrast"] == {"rule": "stack range",
                                                                    "limits": [0.0, 3999.0], "sampled_slices": 6}


def test_ome_zarr_uses_its_finest_level_and_scale(tmp_path):
    import zarr

    root = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w")
    root.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n} for n in "tczyx"],
                                  "datasets": [{"path": "0", "coordinateTransformations": [
                                      {"type": "scale", "scale": [1, 1, 2.0, 0.5, 0.5]}]}]}]
    arr = root.create_array("0", shape=(1, 1, 4, 10, 12), dtype="uint16", chunks=(1, 1, 1, 10, 12))
    arr[:] = np.arange(480).reshape(1, 1, 4, 10, 12)
    source = io.open_images(tmp_path / "img.ome.zarr")
    assert source.shape == (4, 10, 12) and source.spacing == (2.0, 0.5, 0.5)
    assert np.array_equal(source.data[1], np.arange(480).reshape(4, 10, 12)[1])


def test_jpeg_folder_in_natural_order_written_back_as_named_pngs(samples, tmp_path):
    source = io.open_images(samples["jpeg"])
    assert source.names[:3] == ["1", "2", "3"] and source.names[-1] == "12" and source.rgb
    labels = np.zeros(source.shape[:3], np.uint8)
    labels[4, 10:20, 10:20] = 3
    out = io.write_labels(labels, tmp_path / "labels", source)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in source.names] + ["rpsam2.json"])
    assert np.array_equal(io.read_label_plane(out / "5.png"), labels[4])
    assert io.default_form(source) == "png"


def test_video_labels_as_frame_pngs(samples, tmp_path):
    source = io.open_images(samples["mp4"])
    out = io.write_labels(np.zeros(source.shape[:3], np.uint8), tmp_path / "masks", source)
    assert (out / "frame_000039.png").exists() and len(list(out.glob("*.png"))) == 40


def test_stack_limits_sample_long_stacks():
    stack = np.zeros((100, 4, 4), np.uint16)
    stack[:, 0, 0] = np.arange(100)
    limits, sampled = io.stack_limits(stack, samples=10)
    assert sampled == 10 and limits == (0.0, 99.0)  # first and last slices are always sampled
    assert io.stack_limits(np.zeros((3, 4, 4), np.uint8)) == ((0.0, 255.0), 0)


@pytest.mark.parametrize("name, words", [("notes.txt", "not a supported input"), ("missing.mp4", "does not exist")])
def test_unsupported_or_missing_input_is_one_clear_error(tmp_path, name, words):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(io.InputError, match=words):
        io.open_images(tmp_path / name)


def test_a_broken_video_is_refused(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(io.InputError, match="cannot open video"):
        io.open_images(tmp_path / "bad.mp4")


def test_a_failed_png_folder_write_keeps_the_old_folder(tmp_path):
    source = io.ImageSource(np.zeros((2, 4, 4), np.uint8), tmp_path, "frames", ["a", "b"])
    io.write_labels(np.ones((2, 4, 4), np.uint8), tmp_path / "out", source)
    with pytest.raises(io.InputError):
        io.write_labels(np.full((2, 4, 4), -1), tmp_path / "out", source)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "rpsam2.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_training_data_from_a_video_and_a_few_labelled_frames(samples, tmp_path):
    from PIL import Image

    from napari_rpsam2.training.data import DataError
    from napari_rpsam2.training.sources import stack_from_paths

    labels = tmp_path / "labels"
    labels.mkdir()
    for i in (5, 30):
        plane = np.zeros((48, 64), np.uint8)
        plane[16:28, i % 40:(i % 40) + 16] = 1  # the moving block
        Image.fromarray(plane).save(labels / f"frame_{i:06d}.png")
    stack = stack_from_paths(samples["mp4"], labels)
    assert stack.names == ["frame_000005", "frame_000030"] and stack.rgb
    assert np.array_equal(stack.images[1], io.VideoFrames(samples["mp4"])[30])
    assert stack.contrast_limits == (0.0, 255.0) and len(stack.objects()) == 2
    (labels / "frame_000099.png").write_bytes((labels / "frame_000005.png").read_bytes())
    with pytest.raises(DataError, match="shape .*name label files after the slices"):
        stack_from_paths(samples["mp4"], labels)  # frame 99 does not exist: names cannot pair them
