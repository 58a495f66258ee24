"""Annotated stacks from arrays and folders, and the errors users see."""

import json

import numpy as np
import pytest
from PIL import Image

from napari_rpsam2.sample_data import CLASS_NAMES, make_instrument_stack
from napari_rpsam2.training.data import DataError, split_by_slice, stack_from_arrays, stack_from_folders


@pytest.fixture(scope="module")
def small():
    return make_instrument_stack(n_slices=3, shape=(64, 80))


def test_arrays_instance_ids_and_classes(small):
    image, labels = small
    stack = stack_from_arrays(image, labels, class_names=CLASS_NAMES)
    objs = stack.objects()
    assert len(stack) == 3 and stack.rgb
    assert [(o.slice_index, o.object_id, o.class_name) for o in objs[:2]] == [(0, 1, "forceps"), (0, 2, "knife")]
    assert objs[0].area == int((labels[0] == 1).sum())
    assert stack.object_mask(objs[0]).sum() == objs[0].area
    assert stack.summary()["objects_per_class"] == {"forceps": 3, "knife": 3}


def test_binary_mask_is_split_into_components():
    lab = np.zeros((20, 20), np.uint8)
    lab[2:6, 2:6] = 1
    lab[10:15, 10:15] = 1
    stack = stack_from_arrays(np.zeros((20, 20), np.float32), lab, class_names={1: "tool"}, merge_gap=0)
    assert [o.area for o in stack.objects()] == [16, 25]
    assert {o.class_name for o in stack.objects()} == {"tool"}
    # nearest pixels (5, 5) and (10, 10) are 7.07 px apart: one object under the default 12 px gap
    joined = stack_from_arrays(np.zeros((20, 20), np.float32), lab, class_names={1: "tool"})
    assert [(o.area, o.class_name) for o in joined.objects()] == [(41, "tool")]
    assert joined.summary()["merge_gap"] == 12.0


def test_shape_mismatch_and_empty_labels_are_clear(small):
    image, labels = small
    with pytest.raises(DataError, match=r"labels have shape \(2, 64, 80\)"):
        stack_from_arrays(image, labels[:2])
    with pytest.raises(DataError, match="no objects"):
        stack_from_arrays(image, np.zeros_like(labels))
    # a slice without objects is fine
    partial = labels.copy()
    partial[1] = 0
    assert {o.slice_index for o in stack_from_arrays(image, partial).objects()} == {0, 2}


def _write(folder, name, arr):
    folder.mkdir(exist_ok=True)
    Image.fromarray(arr).save(folder / name)


def test_folders_rgb_labels_unmatched_files_and_class_map(tmp_path, small):
    image, labels = small
    for i in range(2):
        _write(tmp_path / "images", f"f{i}.png", image[i])
    _write(tmp_path / "images", "lonely.png", image[2])
    _write(tmp_path / "labels", "f0.png", np.repeat(labels[0].astype(np.uint8)[..., None], 3, axis=-1))
    _write(tmp_path / "labels", "f1.png", labels[1].astype(np.uint8))
    _write(tmp_path / "labels", "orphan.png", labels[2].astype(np.uint8))
    (tmp_path / "classes.json").write_text(json.dumps({"1": "forceps", "2": "knife"}))
    stack = stack_from_folders(tmp_path / "images", tmp_path / "labels", class_map=tmp_path / "classes.json")
    assert stack.names == ["f0", "f1"]
    np.testing.assert_array_equal(stack.labels[0], labels[0])
    assert any("lonely.png" in w for w in stack.warnings)
    assert any("orphan.png" in w for w in stack.warnings)
    assert {o.class_name for o in stack.objects()} == {"forceps", "knife"}


def test_folder_errors_name_the_file(tmp_path, small):
    image, labels = small
    _write(tmp_path / "images", "a.png", image[0])
    colour = np.zeros((64, 80, 3), np.uint8)
    colour[..., 0] = labels[0]
    _write(tmp_path / "labels", "a.png", colour)
    with pytest.raises(DataError, match=r"a\.png is a colour image"):
        stack_from_folders(tmp_path / "images", tmp_path / "labels")
    (tmp_path / "labels" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read .*a\.png"):
        stack_from_folders(tmp_path / "images", tmp_path / "labels")
    _write(tmp_path / "labels", "a.png", labels[0, :10].astype(np.uint8))
    with pytest.raises(DataError, match="must match"):
        stack_from_folders(tmp_path / "images", tmp_path / "labels")
    _write(tmp_path / "other", "b.png", labels[0].astype(np.uint8))
    with pytest.raises(DataError, match="no image .* has a label file"):
        stack_from_folders(tmp_path / "images", tmp_path / "other")


def test_tiff_labels(tmp_path, small):
    import tifffile

    image, labels = small
    (tmp_path / "im").mkdir()
    (tmp_path / "lb").mkdir()
    tifffile.imwrite(tmp_path / "im" / "x.tif", image[0])
    tifffile.imwrite(tmp_path / "lb" / "x.tiff", labels[0].astype(np.uint16))
    stack = stack_from_folders(tmp_path / "im", tmp_path / "lb")
    assert len(stack.objects()) == 2


@pytest.mark.parametrize("n", [2, 3, 5])
def test_split_by_slice_small_stacks(small, n):
    image, labels = make_instrument_stack(n_slices=n, shape=(32, 40))
    train, val = split_by_slice(stack_from_arrays(image, labels), val_fraction=0.2, seed=1)
    assert len(train) >= 1 and len(val) >= 1 and len(train) + len(val) == n
    assert not set(train.names) & set(val.names)
    one = stack_from_arrays(image[0], labels[0])
    with pytest.raises(DataError, match="at least 2 slices"):
        split_by_slice(one)
