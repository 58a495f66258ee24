"""Bad labels and bad folders: each works or says clearly what is wrong and where.

Complements tests/test_data.py (which covers an array shape mismatch, all-zero
label arrays, a non-image file and a label/image size mismatch in folders).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_rpsam2.training.data import DataError, stack_from_arrays, stack_from_folders


def _two_objects(shape: tuple[int, ...] = (2, 24, 30)) -> np.ndarray:
    """Labels with objects 1 and 2 on every slice."""
    lab = np.zeros(shape, np.int32)
    lab[..., 2:8, 3:9] = 1
    lab[..., 12:20, 15:25] = 2
    return lab


def _save(folder: Path, name: str, arr: np.ndarray) -> Path:
    folder.mkdir(exist_ok=True)
    Image.fromarray(arr).save(folder / name)
    return folder / name


# ------------------------------------------------------------------ dtypes
def test_bool_labels_are_masks_split_into_objects() -> None:
    lab = np.zeros((2, 24, 30), bool)
    lab[0, 2:8, 3:9] = True
    lab[0, 12:20, 15:25] = True  # a second, separate region on slice 0
    lab[1, 5:10, 5:10] = True
    stack = stack_from_arrays(np.zeros((2, 24, 30), np.float32), lab, merge_gap=0)  # regions 8.6 px apart
    assert [(o.slice_index, o.area) for o in stack.objects()] == [(0, 36), (0, 80), (1, 25)]
    assert stack.labels.dtype == np.int32


def test_int64_labels_keep_their_ids() -> None:
    lab = _two_objects().astype(np.int64)
    lab[lab == 2] = 70_000  # ids beyond uint16 survive
    stack = stack_from_arrays(np.zeros(lab.shape, np.uint16), lab, class_names={70_000: "knife"})
    assert {o.object_id for o in stack.objects()} == {1, 70_000}
    assert {o.class_name for o in stack.objects() if o.object_id == 70_000} == {"knife"}
    lab[0, 0, 0] = 2**40
    with pytest.raises(DataError, match=r"above 2\^31"):
        stack_from_arrays(np.zeros(lab.shape, np.uint16), lab)


def test_negative_ids_name_the_slice_and_the_fix() -> None:
    lab = _two_objects((3, 24, 30))
    lab[2, 0, 0] = -1
    with pytest.raises(DataError, match=r"slice 2\).*negative ids \(smallest -1\).*use 0 for background"):
        stack_from_arrays(np.zeros(lab.shape, np.float32), lab)


def test_negative_ids_in_a_tiff_name_the_file(tmp_path: Path) -> None:
    import tifffile

    lab = _two_objects((24, 30)).astype(np.int16)
    lab[0, 0] = -5
    _save(tmp_path / "images", "a.png", np.zeros((24, 30), np.uint8))
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "labels" / "a.tif", lab)
    with pytest.raises(DataError, match=r"labels[/\\]a\.tif: labels contain negative ids \(smallest -5\)"):
        stack_from_folders(tmp_path / "images", tmp_path / "labels")


def test_float_labels_whole_numbers_work_fractions_and_nan_do_not() -> None:
    image = np.zeros((2, 24, 30), np.float32)
    whole = _two_objects().astype(np.float64)
    assert len(stack_from_arrays(image, whole).objects()) == 4
    for bad_value in (0.5, np.nan):
        bad = whole.copy()
        bad[1, 3, 3] = bad_value
        with pytest.raises(DataError, match=r"slice 1\): labels must be whole numbers.*integer image"):
            stack_from_arrays(image, bad)


def test_mismatch_of_height_width_names_both_shapes() -> None:
    with pytest.raises(DataError, match=r"labels have shape \(30, 24\) but the image needs \(24, 30\)"):
        stack_from_arrays(np.zeros((24, 30, 3), np.uint8), _two_objects((30, 24)), rgb=True)


# ------------------------------------------------------------------ folders
def test_folder_labels_without_objects(tmp_path: Path) -> None:
    _save(tmp_path / "images", "a.png", np.zeros((24, 30), np.uint8))
    _save(tmp_path / "labels", "a.png", np.zeros((24, 30), np.uint8))
    with pytest.raises(DataError, match=r"label files in .*labels have no objects \(all pixels are 0\)"):
        stack_from_folders(tmp_path / "images", tmp_path / "labels")


def test_sixteen_bit_label_pngs_keep_ids_above_255(tmp_path: Path) -> None:
    lab = _two_objects((24, 30)).astype(np.uint16) * 300
    _save(tmp_path / "images", "a.png", np.zeros((24, 30), np.uint8))
    _save(tmp_path / "labels", "a.png", lab)
    stack = stack_from_folders(tmp_path / "images", tmp_path / "labels")
    assert {o.object_id for o in stack.objects()} == {300, 600}


@pytest.mark.parametrize("damage", ["truncated", "empty"])
@pytest.mark.parametrize("side", ["images", "labels"])
def test_corrupt_png_names_the_file(tmp_path: Path, damage: str, side: str) -> None:
    rng = np.random.default_rng(0)
    _save(tmp_path / "images", "ok.png", rng.integers(0, 255, (24, 30), dtype=np.uint8))
    _save(tmp_path / "labels", "ok.png", _two_objects((24, 30)).astype(np.uint8))
    _save(tmp_path / "images", "bad.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    _save(tmp_path / "labels", "bad.png", (rng.random((64, 64)) > 0.5).astype(np.uint8))
    broken = tmp_path / side / "bad.png"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with pytest.raises(DataError, match=rf"cannot read .*{side}[/\\]bad\.png: .*valid PNG, JPEG, TIFF or BMP file"):
        stack_from_folders(tmp_path / "images", tmp_path / "labels")


def test_folder_slices_of_different_sizes_train_and_evaluate(tmp_path: Path, model, instrument_stack, frame0) -> None:
    """Per-slice sizes are kept (SAM2 encodes each slice at its own size); trainer and evaluation use them."""
    from napari_rpsam2.evaluation.protocol import evaluate
    from napari_rpsam2.training.trainer import TrainConfig, prepare_slices, training_step

    image, labels = instrument_stack
    _save(tmp_path / "images", "big.png", image[0])  # 256×320: its embedding is the session's
    forceps = (labels[0] == 1).astype(np.uint8)  # one object per slice keeps this short
    _save(tmp_path / "labels", "big.png", forceps)
    _save(tmp_path / "images", "small.png", np.ascontiguousarray(image[0, 40:200, 10:230]))  # 160×220
    _save(tmp_path / "labels", "small.png", np.ascontiguousarray(forceps[40:200, 10:230]))
    stack = stack_from_folders(tmp_path / "images", tmp_path / "labels")
    assert isinstance(stack.images, list) and stack.names == ["big", "small"]
    assert stack.summary()["image_sizes"] == [[160, 220], [256, 320]]

    config = TrainConfig(clicks_per_object=2, grid_stride=64, batch_size=2)
    slices = prepare_slices(model, stack, config, candidate_cache=None)
    assert sorted(s.embedding.image_hw for s in slices) == [(160, 220), (256, 320)]
    terms = training_step(model, slices, config, np.random.default_rng(0))
    model.shift_block.zero_grad(set_to_none=True)
    assert np.isfinite(terms["loss"])
    report = evaluate(model, stack, clicks=1, methods=("rpsam2",))
    assert 0.0 <= report["rpsam2"]["mDSC"]["mean"] <= 100.0
