"""Faults during training: kill -9 mid-epoch, then resume; cancel while preparing.

The kill test runs training for real in child processes (one thread each, so
the runs are bit-for-bit comparable); the embeddings are shared through the
on-disk embedding cache so only the first runs pay for the encoder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_rpsam2 import RPSAM2
from napari_rpsam2.model.checkpoint import load_checkpoint, read_header, save_checkpoint
from napari_rpsam2.sample_data import make_instrument_stack
from napari_rpsam2.training.data import stack_from_arrays
from napari_rpsam2.training.trainer import TrainConfig, last_checkpoint_path, train_shift_block

CHILD = """
import sys
import torch
torch.set_num_threads(1)
from napari_rpsam2 import RPSAM2
from napari_rpsam2.training.data import stack_from_folders
from napari_rpsam2.training.trainer import TrainConfig, train_shift_block

root, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] or None
model = RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0, cache_dir=root + "/cache")
stack = stack_from_folders(root + "/images", root + "/labels")
config = TrainConfig(epochs=3, batch_size=1, clicks_per_object=2, grid_stride=48, seed=7)
result = train_shift_block(model, stack, out, config, resume=resume)
print("done", [h.epoch for h in result.history], flush=True)
"""


def _start(root: Path, out: Path, resume: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(out), str(resume or "")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def _epoch(path: Path) -> int:
    """Epoch recorded in a checkpoint's header, 0 while it does not exist (yet)."""
    try:
        return int(read_header(path)["training"]["epoch"])
    except Exception:  # not written yet (the writer renames a complete temp file into place)
        return 0


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0].state_dict()


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    image, labels = make_instrument_stack(n_slices=2)
    for folder in ("images", "labels", "ref", "run"):
        (tmp_path / folder).mkdir()
    for i in range(2):
        Image.fromarray(image[i]).save(tmp_path / "images" / f"f{i}.png")
        Image.fromarray(labels[i].astype(np.uint8)).save(tmp_path / "labels" / f"f{i}.png")
    ref_out, out = tmp_path / "ref" / "shift.safetensors", tmp_path / "run" / "shift.safetensors"
    last = last_checkpoint_path(out)

    reference = _start(tmp_path, ref_out)  # uninterrupted, runs beside the one we kill
    victim = _start(tmp_path, out)
    try:
        deadline = time.monotonic() + 180
        while _epoch(last) < 1:  # a subprocess, polled: epoch 1 is on disk, epoch 2 has begun
            assert victim.poll() is None, victim.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "epoch 1 never finished"
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    assert _epoch(last) == 1, "killed after epoch 2 was written: not mid-epoch"  # epoch 2 never finished

    # both checkpoints are complete and readable; no temp file was left behind
    header = read_header(last)
    assert header["training"]["best_epoch"] == 1 and _epoch(out) == 1
    assert _weights(out).keys() == _weights(last).keys()
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]

    resumed = _start(tmp_path, out, resume=last)
    assert "done [1, 2, 3]" in _finish(resumed)  # the resumed run continues the same history
    _finish(reference)
    assert _epoch(last) == 3 == _epoch(last_checkpoint_path(ref_out))
    for mine, theirs in ((last, last_checkpoint_path(ref_out)), (out, ref_out)):
        a, b = _weights(mine), _weights(theirs)
        assert all(torch.equal(a[k], b[k]) for k in a), f"{mine.name} differs from the uninterrupted run"
    assert read_header(out)["training"]["best_epoch"] == read_header(ref_out)["training"]["best_epoch"]


@pytest.mark.parametrize("stage", ["embeddings", "candidates"])
def test_cancel_while_preparing_keeps_previous_checkpoints(tmp_path: Path, model: RPSAM2, frame0, stage: str
                                                           ) -> None:
    """A resumed run cancelled before its first step leaves both checkpoints byte for byte."""
    from napari_rpsam2._widgets._torch_import import import_torch_compiler

    import_torch_compiler()  # AdamW imports torch._dynamo; safe even if a napari viewer ran before
    image, labels, _ = frame0
    stack = stack_from_arrays(np.stack([image, image]), np.stack([labels, labels]))  # slice 1: a cache hit
    out = tmp_path / "shift.safetensors"
    last = last_checkpoint_path(out)
    torch.manual_seed(1)
    previous = RPSAM2(model.backbone, cache=model.cache).shift_block
    torch.nn.init.normal_(previous.offset_head.weight, std=0.01)  # a "trained" block
    save_checkpoint(out, previous, model.backbone.name, training={"epoch": 4, "best_epoch": 4})
    save_checkpoint(last, previous, model.backbone.name, training={"epoch": 5, "best_epoch": 4, "best_score": 0.0})
    before = {p.name: p.read_bytes() for p in (out, last)}

    seen: list[str] = []
    fresh = RPSAM2(model.backbone, cache=model.cache)
    result = train_shift_block(fresh, stack, out, TrainConfig(epochs=9, grid_stride=64, clicks_per_object=1),
                               resume=last, candidate_cache=None, progress=lambda s, d, t: seen.append(s),
                               cancel=lambda: stage in seen)
    assert result.cancelled and result.history == []
    assert seen.count(stage) == 1 and seen[-1] == stage  # stopped after one item of that stage
    assert {p.name: p.read_bytes() for p in (out, last)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no temp files either
