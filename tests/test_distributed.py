"""torchrun on the CPU: each process prepares its shard, one job = one trained block, a failure ends the job.

Lean on purpose: 4 small frames, 2 epochs, one thread per process.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from free_port import free_port
from PIL import Image

from napari_rpsam2.model.checkpoint import load_checkpoint, read_header
from napari_rpsam2.sample_data import make_instrument_stack

TORCHRUN = Path(sys.executable).with_name("torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _folders(root: Path, n: int) -> tuple[Path, Path]:
    image, labels = make_instrument_stack(n_slices=n)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(image[i]).save(root / "images" / f"f{i}.png")
        Image.fromarray(labels[i].astype(np.uint8)).save(root / "labels" / f"f{i}.png")
    return root / "images", root / "labels"


def _train(args: list[str], procs: int | None, timeout: int = 600) -> subprocess.CompletedProcess:
    start = ([str(TORCHRUN), "--nproc_per_node", str(procs), "--master_port", str(free_port()), "-m",
              "napari_rpsam2.cli"] if procs else [sys.executable, "-m", "napari_rpsam2.cli"])
    return subprocess.run([*start, "train", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_two_processes_train_the_same_block_as_one_with_the_same_global_batch(tmp_path):
    """Each process encodes only its share (counted); the block equals the 1-process run's.

    2 processes × batch 1 against 1 process × batch 2 over the same 4 slices,
    2 epochs, no validation split: the same clicks on the same slices in each
    step, so the weights agree up to float summation order (atol 1e-5).
    """
    images, labels = _folders(tmp_path / "data", 4)
    cache = tmp_path / "cache"
    common = ["--images", str(images), "--labels", str(labels), "--epochs", "2", "--clicks", "2",
              "--grid-stride", "32", "--val-fraction", "0", "--lr", "0.001", "--sam2-weights", "random",
              "--cache", str(cache), "--quiet"]
    two = tmp_path / "two" / "shift.safetensors"
    two.parent.mkdir()
    proc = _train([*common, "--batch-size", "1", "--out", str(two)], 2)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for rank in (0, 1):  # slices 0, 2 on process 0 and 1, 3 on process 1: each encoded once in the job
        assert f"process {rank} of 2: encoded 2 slice(s), reused 0" in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in two.parent.iterdir()) == ["shift.last.safetensors", "shift.safetensors"]
    header = read_header(two)
    assert header["training"]["world_size"] == 2
    assert "on 2 processes" in proc.stdout and proc.stdout.count("wrote ") == 1, proc.stdout

    one = tmp_path / "one" / "shift.safetensors"
    one.parent.mkdir()
    proc = _train([*common, "--batch-size", "2", "--out", str(one)], None)
    assert proc.returncode == 0, proc.stderr[-4000:]
    a = load_checkpoint(two.with_name("shift.last.safetensors"))[0].state_dict()
    b = load_checkpoint(one.with_name("shift.last.safetensors"))[0].state_dict()
    assert not torch.equal(a["offset_head.weight"], torch.zeros_like(a["offset_head.weight"]))  # it trained
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=name)


FAILING = """
import sys
import torch
torch.set_num_threads(1)
import torch.distributed as dist
from napari_rpsam2 import RPSAM2
from napari_rpsam2.sample_data import make_instrument_stack
from napari_rpsam2.training import prepare, trainer
from napari_rpsam2.training.data import stack_from_arrays

dist.init_process_group("gloo")
rank, where = dist.get_rank(), sys.argv[2]


def fail(*a, **k):
    raise OSError(f"disk full on process {rank}")


prepare.Preparer.prepare = fail if rank == 1 and where == "prepare" else (lambda *a, **k: None)
if where == "step" and rank == 1:  # reading its first batch fails while process 0 waits in the all-reduce
    prepare.Preparer.load = fail
model = RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0)
image, labels = make_instrument_stack(n_slices=2)
trainer.train_shift_block(model, stack_from_arrays(image, labels), sys.argv[1],
                          trainer.TrainConfig(epochs=2, batch_size=1, clicks_per_object=1, grid_stride=48))
"""


@pytest.mark.parametrize("where", ["prepare", "step"])
def test_a_failing_process_ends_the_job_with_its_message(tmp_path, where):
    script = tmp_path / "job.py"
    script.write_text(FAILING)
    began = time.perf_counter()
    proc = subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", str(free_port()), str(script),
                           str(tmp_path / "x.safetensors"), where],
                          capture_output=True, text=True, timeout=240, env=ENV)
    took = time.perf_counter() - began
    assert proc.returncode != 0
    assert "disk full on process 1" in proc.stderr, proc.stderr[-3000:]
    if where == "prepare":  # the other process stops with the failed one's message, not at a timeout
        assert "process 1 of 2 failed: disk full on process 1" in proc.stderr, proc.stderr[-3000:]
    assert took < 200 and not (tmp_path / "x.safetensors").exists()


def test_bad_output_folder_stops_every_process(tmp_path):
    images, labels = _folders(tmp_path / "data", 1)
    proc = _train(["--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "no" / "x.safetensors"),
                   "--sam2-weights", "random", "--quiet"], 2, timeout=120)
    assert proc.returncode != 0
    # every process checks before any work; the first refusal ends the job (torchrun stops the others)
    assert "--out folder" in proc.stderr and "does not exist" in proc.stderr, proc.stderr[-3000:]
