"""Shift-block checkpoints: safetensors + JSON header, clear errors on bad files."""

import json
import struct

import numpy as np
import pytest
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.model import CheckpointError, ShiftBlock, load_checkpoint, read_header, save_checkpoint
from napari_rpsam2.model.checkpoint import FORMAT_VERSION


@pytest.fixture()
def trained_block():
    torch.manual_seed(3)
    block = ShiftBlock()
    with torch.no_grad():
        block.offset_head.weight.normal_(0, 0.5)
    return block


def test_round_trip_keeps_weights_header_and_behaviour(tmp_path, trained_block, model, frame0):
    image, labels, _ = frame0
    path = save_checkpoint(tmp_path / "block.safetensors", trained_block, "sam2.1_hiera_tiny",
                           training={"epochs": 3, "n_objects": 2}, metrics={"val_mDSC": 50.0})
    block, header, extras = load_checkpoint(path, backbone="sam2.1_hiera_tiny")
    for (k, a), (_, b) in zip(trained_block.state_dict().items(), block.state_dict().items()):
        assert torch.equal(a, b), k
    assert header["format_version"] == FORMAT_VERSION
    assert header["backbone"] == "sam2.1_hiera_tiny"
    assert header["shift_block"]["depth"] == 6
    assert header["training"]["epochs"] == 3 and header["metrics"]["val_mDSC"] == 50.0
    assert header["parameters"] == trained_block.parameter_count()
    assert extras == {}

    a = RPSAM2(model.backbone, cache=model.cache)
    a.set_shift_block(trained_block)
    b = RPSAM2(model.backbone, cache=model.cache)
    b.load_shift_block(path)
    click = np.argwhere(labels == 1)[:1].astype(float)
    ra, rb = a.segment(image, click), b.segment(image, click)
    np.testing.assert_allclose(ra.points, rb.points, atol=1e-6)
    assert np.array_equal(ra.mask, rb.mask)
    assert "trained, 3 epochs" in b.summary()


def test_model_save_shift_block_and_extra_tensors(tmp_path, model):
    path = model.save_shift_block(tmp_path / "fresh.safetensors", metrics={"note": "identity"})
    assert read_header(path)["metrics"] == {"note": "identity"}
    extra = {"optim.step": torch.tensor([7])}
    p2 = save_checkpoint(tmp_path / "x.safetensors", ShiftBlock(), "b", extra_tensors=extra)
    assert load_checkpoint(p2)[2]["optim.step"].item() == 7
    with pytest.raises(ValueError, match="clashes"):
        save_checkpoint(tmp_path / "y.safetensors", ShiftBlock(), "b",
                        extra_tensors={"shift_block.x": torch.zeros(1)})


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path, trained_block):
    path = tmp_path / "block.safetensors"
    save_checkpoint(path, ShiftBlock(), "sam2.1_hiera_tiny")
    save_checkpoint(path, trained_block, "sam2.1_hiera_tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block.safetensors"]
    w = load_checkpoint(path)[0].offset_head.weight
    assert torch.equal(w, trained_block.offset_head.weight)


def test_bad_files_give_clear_errors(tmp_path, trained_block):
    good = save_checkpoint(tmp_path / "good.safetensors", trained_block, "sam2.1_hiera_tiny")
    data = good.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors is truncated"):
        load_checkpoint(truncated)

    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="too short"):
        load_checkpoint(tiny)

    pickled = tmp_path / "block.pt"
    torch.save(trained_block.state_dict(), pickled)
    with pytest.raises(CheckpointError, match="pickle file, which is never opened"):
        load_checkpoint(pickled)

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a napari-rpsam2 shift block"):
        load_checkpoint(foreign)

    with pytest.raises(CheckpointError, match="trained with backbone 'sam2.1_hiera_tiny'.*'sam2.1_hiera_large'"):
        load_checkpoint(good, backbone="sam2.1_hiera_large")

    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def _rewrite_header(src, dst, edit):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header = json.loads(meta["rpsam2"])
    tensors = edit(header, tensors) or tensors
    save_file(tensors, str(dst), metadata={"rpsam2": json.dumps(header)})


def test_newer_format_and_inconsistent_tensors_are_refused(tmp_path, trained_block):
    good = save_checkpoint(tmp_path / "good.safetensors", trained_block, "sam2.1_hiera_tiny")
    newer = tmp_path / "newer.safetensors"
    _rewrite_header(good, newer, lambda h, t: h.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="format version 2"):
        load_checkpoint(newer)

    def shrink(header, tensors):
        header["shift_block"]["depth"] = 7
    deeper = tmp_path / "deeper.safetensors"
    _rewrite_header(good, deeper, shrink)
    with pytest.raises(CheckpointError, match="does not match its own header"):
        load_checkpoint(deeper)


def test_header_length_check_reads_no_pickle(tmp_path):
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        read_header(odd)
