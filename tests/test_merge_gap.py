"""Binary labels: pieces of one instrument closer than the merge gap are one object."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_rpsam2.training.components import DEFAULT_MERGE_GAP, split_objects
from napari_rpsam2.training.data import DataError, stack_from_arrays, stack_from_folders

FRAME = Path(__file__).resolve().parents[2] / "shared" / "data" / "cataract1k" / "val" / "labels" / "case5316_11.png"


def _pixels(shape, *points) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for r, c in points:
        mask[r, c] = True
    return mask


@pytest.mark.parametrize("gap, objects", [(0, 2), (4.99, 2), (5.0, 1), (12, 1)])
def test_two_pixels_five_apart_join_from_a_gap_of_five(gap, objects):
    mask = _pixels((10, 10), (1, 1), (4, 5))  # 3 rows and 4 columns apart: 5 px
    assert split_objects(mask, gap).max() == objects


def test_chains_join_and_ids_follow_the_raster_order():
    mask = _pixels((30, 60), (2, 50), (10, 2), (10, 10), (10, 18), (25, 30))  # a chain of three 8 px apart
    ids = split_objects(mask, 8.0)
    assert [ids[2, 50], ids[10, 2], ids[10, 10], ids[10, 18], ids[25, 30]] == [1, 2, 2, 2, 3]
    assert ids.dtype == np.int32 and set(np.unique(ids)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(split_objects(mask, 7.9) > 0, mask)
    assert split_objects(mask, 7.9).max() == 5


def _forceps(shape=(120, 160), gap_cols=9) -> np.ndarray:
    """Two 4-px-wide vertical prongs ``gap_cols`` columns apart (nearest pixel centres ``gap_cols + 1``)."""
    mask = np.zeros(shape, bool)
    mask[20:100, 60:64] = True
    mask[20:100, 64 + gap_cols:68 + gap_cols] = True
    return mask


def test_default_joins_prongs_and_keeps_separate_instruments_apart():
    prongs = _forceps(gap_cols=8)  # 9 px apart, like the forceps of Cataract-1k case5316_11 (8.9 px)
    two_tools = _forceps(gap_cols=20)  # 21 px apart, like the closest two instruments there (20.9 px)
    image = np.zeros((2, 120, 160), np.uint8)
    stack = stack_from_arrays(image, np.stack([prongs, two_tools]).astype(np.uint8))
    assert DEFAULT_MERGE_GAP == 12.0
    assert [o.slice_index for o in stack.objects()] == [0, 1, 1]
    assert stack.objects()[0].area == int(prongs.sum())
    split = stack_from_arrays(image, np.stack([prongs, two_tools]).astype(np.uint8), merge_gap=0)
    assert [o.slice_index for o in split.objects()] == [0, 0, 1, 1]


def test_instance_labels_are_never_merged(tmp_path):
    lab = _forceps().astype(np.uint8)
    lab[:, 70:] *= 2  # the two prongs carry ids 1 and 2
    stack = stack_from_arrays(np.zeros(lab.shape, np.uint8), lab, merge_gap=50)
    assert [o.object_id for o in stack.objects()] == [1, 2] and stack.merge_gap is None
    # a folder with instance labels where one file uses a single id keeps that id (its class)
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for name, arr in (("a", lab), ("b", (lab == 2).astype(np.uint8) * 2)):
        Image.fromarray(np.zeros(lab.shape, np.uint8)).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(arr).save(tmp_path / "labels" / f"{name}.png")
    stack = stack_from_folders(tmp_path / "images", tmp_path / "labels", class_map={1: "left", 2: "right"})
    assert [(o.slice_index, o.object_id, o.class_name) for o in stack.objects()] == [
        (0, 1, "left"), (0, 2, "right"), (1, 2, "right")]


def test_folders_take_the_gap_and_bad_gaps_are_refused(tmp_path):
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((120, 160), np.uint8)).save(tmp_path / "images" / "f.png")
    Image.fromarray(_forceps(gap_cols=8).astype(np.uint8) * 255).save(tmp_path / "labels" / "f.png")
    assert len(stack_from_folders(tmp_path / "images", tmp_path / "labels").objects()) == 1
    assert len(stack_from_folders(tmp_path / "images", tmp_path / "labels", merge_gap=0).objects()) == 2
    for bad in (-1, float("nan"), "wide"):
        with pytest.raises(DataError, match="merge gap must be a distance in pixels"):
            stack_from_folders(tmp_path / "images", tmp_path / "labels", merge_gap=bad)
        with pytest.raises(DataError, match="merge gap"):
            stack_from_arrays(np.zeros((10, 10)), np.ones((10, 10), np.uint8), merge_gap=bad)


@pytest.mark.skipif(not FRAME.is_file(), reason="the Cataract-1k frames are not beside the repository")
def test_the_forceps_of_cataract1k_case5316_11_is_one_object():
    lab = np.asarray(Image.open(FRAME))
    lab = lab[..., 0] if lab.ndim == 3 else lab
    assert split_objects(lab, 0).max() == 2  # two prongs, 8.9 px apart
    joined = split_objects(lab, DEFAULT_MERGE_GAP)
    assert joined.max() == 1 and np.array_equal(joined > 0, lab > 0)
    assert split_objects(lab, 8.8).max() == 2 and split_objects(lab, 9.0).max() == 1
