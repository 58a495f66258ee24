"""Bad files: damaged, foreign or malicious checkpoints, unwritable folders, full disks."""

from __future__ import annotations

import builtins
import errno
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_rpsam2._atomic as atomic
from napari_rpsam2._atomic import OutputError
from napari_rpsam2.model import (
    CheckpointError,
    EmbeddingCache,
    ImageEmbedding,
    ShiftBlock,
    ShiftBlockConfig,
    WeightsError,
    load_checkpoint,
    save_checkpoint,
)
from napari_rpsam2.model.embedding_cache import CacheWarning
from napari_rpsam2.model.weights import read_state_dict

SMALL = ShiftBlockConfig(depth=1, mlp_dim=64)


def _block(seed: int = 0) -> ShiftBlock:
    torch.manual_seed(seed)
    return ShiftBlock(SMALL)


@pytest.fixture
def good(tmp_path) -> tuple[Path, bytes]:
    path = save_checkpoint(tmp_path / "best.safetensors", _block(0), "sam2.1_hiera_tiny", metrics={"mDSC": 80.0})
    return path, path.read_bytes()


@pytest.mark.parametrize("keep", [0, 5, 100, 0.5, -1])
def test_truncated_checkpoint_is_refused(tmp_path, good, keep):
    path, data = good
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors.*(too short|truncated)"):
        load_checkpoint(cut)


def test_header_length_ending_in_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    """A safetensors header length like 0x...80 starts with the byte a pickle starts with."""
    path = tmp_path / "x.safetensors"
    note = ""
    for _ in range(3):
        save_checkpoint(path, _block(1), "sam2.1_hiera_tiny", training={"note": note})
        (n,) = struct.unpack("<Q", path.read_bytes()[:8])
        if n % 256 == 0x80:
            break
        note += "x" * ((0x80 - n) % 256)
    assert path.read_bytes()[0] == 0x80
    block, header, _ = load_checkpoint(path)
    assert header["training"]["note"] == note


def test_checkpoint_from_another_backbone_is_refused(tmp_path, model):
    path = save_checkpoint(tmp_path / "large.safetensors", _block(), "sam2.1_hiera_large")
    before = model.shift_block
    with pytest.raises(CheckpointError, match="trained with backbone 'sam2.1_hiera_large'.*choose backbone"):
        model.load_shift_block(path)
    assert model.shift_block is before


def _rewrite_header(src: Path, dst: Path, **changes) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header = json.loads(meta["rpsam2"])
    header.update(changes)
    save_file(tensors, str(dst), metadata={"rpsam2": json.dumps(header)})
    return dst


def test_newer_format_version_and_foreign_files_are_refused(tmp_path, good):
    from safetensors.torch import save_file

    path, _ = good
    newer = _rewrite_header(path, tmp_path / "v2.safetensors", format_version=2)
    with pytest.raises(CheckpointError, match="format version 2.*Update napari-rpsam2"):
        load_checkpoint(newer)
    other = _rewrite_header(path, tmp_path / "other.safetensors", format="someone-else")
    with pytest.raises(CheckpointError, match="has format 'someone-else'"):
        load_checkpoint(other)
    save_file({"w": torch.zeros(3)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a napari-rpsam2 shift block"):
        load_checkpoint(tmp_path / "plain.safetensors")
    shapes = _rewrite_header(path, tmp_path / "depth.safetensors", shift_block={**SMALL.to_dict(), "depth": 2})
    with pytest.raises(CheckpointError, match="does not match its own header"):
        load_checkpoint(shapes)


def test_sam2_weights_from_another_model_are_refused(tmp_path):
    from napari_rpsam2.model import SAM2Backbone

    path = tmp_path / "other.pt"
    torch.save({"model": {"image_encoder.other.weight": torch.zeros(2)}}, path)
    with pytest.raises(WeightsError, match="do not fit backbone sam2.1_hiera_tiny.*Pick the backbone size"):
        SAM2Backbone.build("tiny", path, device="cpu")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsError, match="truncated or not a PyTorch checkpoint"):
        read_state_dict(truncated)


class _RunsCode:
    """Unpickling this creates the marker file: a stand-in for any code a file could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _malicious_files(folder: Path, marker: Path) -> list[Path]:
    evil = _RunsCode(marker)
    files = {
        "zip.pt": lambda p: torch.save({"model": {"w": torch.zeros(1)}, "x": evil}, p),
        "legacy.pt": lambda p: torch.save({"model": evil}, p, _use_new_zipfile_serialization=False),
        "proto2.pt": lambda p: p.write_bytes(pickle.dumps({"model": evil}, protocol=2)),
        "proto0.pt": lambda p: p.write_bytes(pickle.dumps(evil, protocol=0)),
        "renamed.safetensors": lambda p: torch.save({"model": evil}, p),
    }
    for name, write in files.items():
        write(folder / name)
    return [folder / name for name in files]


def test_pickle_that_would_run_code_is_never_unpickled(tmp_path):
    marker = tmp_path / "code_ran"
    files = _malicious_files(tmp_path, marker)
    # the files are really dangerous: plain unpickling runs the code
    pickle.loads((tmp_path / "proto2.pt").read_bytes())
    assert marker.exists()
    marker.unlink()
    for path in files:
        if path.suffix == ".pt":
            with pytest.raises(WeightsError, match="refused to load SAM2 weights.*could run code"):
                read_state_dict(path)
        else:
            with pytest.raises(WeightsError, match="not a readable safetensors file"):
                read_state_dict(path)
        with pytest.raises(CheckpointError, match=path.name):
            load_checkpoint(path)
        assert not marker.exists(), f"loading {path.name} ran code"


def test_output_folder_that_is_a_file_or_missing(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder; choose an existing output folder"):
        save_checkpoint(afile / "ckpt.safetensors", _block(), "sam2.1_hiera_tiny")
    with pytest.raises(OutputError, match="does not exist"):
        save_checkpoint(tmp_path / "missing" / "ckpt.safetensors", _block(), "sam2.1_hiera_tiny")
    assert afile.read_text() == "x"


def test_read_only_output_folder_keeps_the_old_checkpoint(tmp_path, good, monkeypatch):
    path, data = good

    def refuse(*args, **kwargs):  # what a read-only folder does (root ignores chmod, so simulate)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match="Permission denied.*writable.*choose another output folder"):
        save_checkpoint(path, _block(5), "sam2.1_hiera_tiny")
    assert path.read_bytes() == data


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_really_read_only_folder(tmp_path, good):
    path, data = good
    os.chmod(tmp_path, 0o500)
    try:
        with pytest.raises(OutputError, match="writable"):
            save_checkpoint(path, _block(5), "sam2.1_hiera_tiny")
    finally:
        os.chmod(tmp_path, 0o700)
    assert path.read_bytes() == data


def _half_writer(raise_error: bool):
    from safetensors.torch import save_file as real

    def save_file(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        if raise_error:
            raise OSError(errno.ENOSPC, "No space left on device")

    return save_file


@pytest.mark.parametrize("reports_error", [True, False], ids=["ENOSPC", "silent"])
def test_full_disk_keeps_the_old_checkpoint_byte_for_byte(tmp_path, good, monkeypatch, model, reports_error):
    import safetensors.torch

    path, data = good
    monkeypatch.setattr(safetensors.torch, "save_file", _half_writer(reports_error))
    message = "No space left on device" if reports_error else "incomplete.*is the disk full"
    with pytest.raises(OutputError, match=message + ".*previous file, if any, is unchanged"):
        save_checkpoint(path, _block(7), "sam2.1_hiera_tiny")
    with pytest.raises(OutputError):
        model.save_shift_block(path)
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors"], "a temp file was left behind"
    load_checkpoint(path)  # still a good checkpoint


def test_full_disk_while_caching_an_embedding_only_warns(tmp_path, monkeypatch, frame0):
    import safetensors.torch

    _, _, base = frame0
    cache = EmbeddingCache(1 << 28, tmp_path / "cache")
    monkeypatch.setattr(safetensors.torch, "save_file", _half_writer(True))
    with pytest.warns(CacheWarning, match="not saved to the disk cache.*No space left"):
        cache.save_to_disk("abc", base)
    assert cache.stats.disk_errors == 1 and cache.stats.disk_writes == 0
    assert list((tmp_path / "cache").iterdir()) == []


def test_damaged_disk_cache_file_is_only_a_miss(tmp_path, frame0):
    _, _, base = frame0
    cache = EmbeddingCache(1 << 28, tmp_path)
    cache.save_to_disk("sig", base)
    good = cache.load_from_disk("sig", "cpu")
    assert isinstance(good, ImageEmbedding) and good.image_hw == base.image_hw
    file = cache._disk_path("sig")
    file.write_bytes(file.read_bytes()[:1000])
    assert cache.load_from_disk("sig", "cpu") is None
    np.testing.assert_array_equal(good.image_embed.numpy(), base.image_embed.numpy())
