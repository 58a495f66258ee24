"""``rpsam2 autoseg train`` under torchrun: two CPU processes (gloo) train the generator one process trains.

Lean on purpose: 9 images of 48², a 4-channel U-Net at 32², 3 epochs, one thread per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from free_port import free_port
from PIL import Image
from shapes_data import discs_and_squares

from napari_rpsam2.autoseg import load_generator, read_generator_header

TORCHRUN = Path(sys.executable).with_name("torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _folders(root: Path) -> tuple[Path, Path, Path]:
    images, classes = discs_and_squares(9, size=48, seed=3)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    for i in range(len(images)):
        Image.fromarray((np.clip(images[i], 0, 1) * 255).astype(np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(np.choose(classes[i], [0, 50, 90]).astype(np.uint8)).save(root / "labels" / f"s{i}.png")
    (root / "classes.json").write_text(json.dumps({"50": "disc", "90": "square"}))
    return root / "images", root / "labels", root / "classes.json"


def _train(args: list[str], procs: int | None) -> subprocess.CompletedProcess:
    start = ([str(TORCHRUN), "--nproc_per_node", str(procs), "--master_addr", "127.0.0.1", "--master_port",
              str(free_port()), "-m", "napari_rpsam2.cli"] if procs else [sys.executable, "-m", "napari_rpsam2.cli"])
    return subprocess.run([*start, "autoseg", "train", *args], capture_output=True, text=True, timeout=600, env=ENV)


def test_two_processes_train_the_generator_one_process_trains(tmp_path):
    """7 training slices in batches of 3 (3, 3, 1): the processes take 2 + 1, 2 + 1 and 1 + none of them.

    The shares are weighed so that the averaged gradient is the whole batch's, the process
    without a slice joins with a zero gradient, and validation counts are summed: the weights
    agree with the one-process run up to float summation order.
    """
    images, labels, class_map = _folders(tmp_path / "data")
    common = ["--images", str(images), "--labels", str(labels), "--class-map", str(class_map), "--epochs", "3",
              "--batch-size", "3", "--val-fraction", "0.2", "--input-size", "32", "--features", "4,4,8,8,16,4",
              "--device", "cpu", "--quiet"]
    two, one = tmp_path / "two.safetensors", tmp_path / "one.safetensors"
    proc = _train([*common, "--out", str(two)], 2)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "on 2 processes" in proc.stdout and proc.stdout.count("wrote ") == 1, proc.stdout
    proc = _train([*common, "--out", str(one)], None)
    assert proc.returncode == 0, proc.stderr[-4000:]

    header_two, header_one = read_generator_header(two), read_generator_header(one)
    assert header_two["training"]["train_slices"] == header_one["training"]["train_slices"] == 7
    assert header_two["training"]["best_epoch"] == header_one["training"]["best_epoch"]
    assert abs(header_two["metrics"]["val_dice"] - header_one["metrics"]["val_dice"]) < 1e-9
    a, b = load_generator(two).network.state_dict(), load_generator(one).network.state_dict()
    start = load_generator(one)  # the seeded initial weights, to show that training moved them
    fresh = type(start).create(start.config, seed=0).network.state_dict()
    assert any(not torch.allclose(b[k].float(), fresh[k].float()) for k in b)
    # A convolution's bias right before an instance norm is cancelled by the norm: its gradient is
    # rounding noise, which AdamW scales up to full steps, so those biases differ (harmlessly).
    for name in a:
        if not name.endswith(".conv.bias"):
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=name)
    pictures = [np.asarray(Image.open(p)) for p in sorted(images.iterdir())]
    gen_two, gen_one = load_generator(two), load_generator(one)
    for picture in pictures:  # the networks themselves agree (those biases included)
        np.testing.assert_allclose(gen_two.predict(picture, 0).logits, gen_one.predict(picture, 0).logits,
                                   rtol=0, atol=1e-4)
