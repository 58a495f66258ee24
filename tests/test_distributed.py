"""Two CPU processes under torchrun train one shift block; only rank 0 writes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from napari_rpsam2.model.checkpoint import read_header
from napari_rpsam2.sample_data import make_instrument_stack


def test_torchrun_two_processes(tmp_path):
    image, labels = make_instrument_stack(n_slices=2)
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for i in range(2):
        Image.fromarray(image[i]).save(tmp_path / "images" / f"f{i}.png")
        Image.fromarray(labels[i].astype(np.uint8)).save(tmp_path / "labels" / f"f{i}.png")
    out = tmp_path / "ckpt" / "shift.safetensors"
    out.parent.mkdir()
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m", "napari_rpsam2.cli", "train",
         "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"), "--out", str(out),
         "--epochs", "1", "--clicks", "2", "--grid-stride", "24", "--sam2-weights", "random"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    files = sorted(p.name for p in out.parent.iterdir())
    assert files == ["shift.last.safetensors", "shift.safetensors"], files
    header = read_header(out)
    assert header["training"]["world_size"] == 2 and header["training"]["epoch"] == 1
    assert "on 2 processes" in proc.stdout and proc.stdout.count("wrote ") == 1, proc.stdout
