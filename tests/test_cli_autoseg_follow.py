"""``rpsam2 autoseg run --follow`` and ``autoseg evaluate --follow`` on the frames of one stack (PNG files)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_rpsam2 import cli
from test_autoseg_follow import N, _discs

TINY = ["--input-size", "32", "--features", "4,4,8,8,16,4", "--quiet"]


@pytest.fixture(scope="module")
def stack_folders(tmp_path_factory):
    """The two moving discs as ``f0.png`` … ``f9.png`` with their labels (255 on the discs)."""
    root = tmp_path_factory.mktemp("follow")
    frames, truth = _discs()
    for sub in ("images", "labels"):
        (root / sub).mkdir()
    for t in range(N):
        Image.fromarray(frames[t]).save(root / "images" / f"f{t}.png")
        Image.fromarray(np.where(truth[t] > 0, 255, 0).astype(np.uint8)).save(root / "labels" / f"f{t}.png")
    return root


@pytest.fixture(scope="module")
def generator(stack_folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "generator.safetensors"
    code = cli.main(["autoseg", "train", "--images", str(stack_folders / "images"), "--labels",
                     str(stack_folders / "labels"), "--out", str(out), "--epochs", "12", "--val-fraction", "0",
                     "--lr", "0.01", "--device", "cpu", *TINY])
    assert code == 0
    return out


def test_run_follow_writes_every_frame_with_one_id_per_object_from_first_to_last(stack_folders, generator,
                                                                                  tmp_path, model, capsys):
    out = tmp_path / "out"
    code = cli.main(["autoseg", "run", "--images", str(stack_folders / "images"), "--generator", str(generator),
                     "--out", str(out), "--stages", "1", "--follow", "--min-area", "4", "--sam2-weights", "random",
                     "--quiet"], model=model)
    assert code == 0, capsys.readouterr().err
    assert "followed through the stack" in capsys.readouterr().out
    names = [f"f{t}" for t in range(N)]
    labels = np.stack([tifffile.imread(out / f"{n}.tif") for n in names])
    classes = np.stack([tifffile.imread(out / "classes" / f"{n}.tif") for n in names])
    rows = list(csv.DictReader(open(out / "objects.csv")))
    assert rows and list(rows[0]) == ["file", "label", "class", "score", "area", "first", "last"]
    assert len({r["label"] for r in rows}) == len(rows)  # each object listed once, on its key slice
    for r in rows:
        ident = int(r["label"])
        on = np.flatnonzero((labels == ident).any(axis=(1, 2)))
        assert (names[on[0]] + ".png", names[on[-1]] + ".png") == (r["first"], r["last"])
        assert int(r["area"]) == (labels == ident).sum() and (classes[labels == ident] == 1).all()
        assert (labels[names.index(r["file"][:-4])] == ident).any()  # its key slice holds it
    assert set(np.unique(labels)) == {0, *(int(r["label"]) for r in rows)}


def test_evaluate_follow_adds_a_row(stack_folders, generator, tmp_path, model, capsys):
    out = tmp_path / "report.json"
    code = cli.main(["autoseg", "evaluate", "--images", str(stack_folders / "images"), "--labels",
                     str(stack_folders / "labels"), "--generator", str(generator), "--out", str(out), "--stages",
                     "0", "--follow", "--min-area", "4", "--sam2-weights", "random", "--quiet"], model=model)
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert list(report["stages"]) == ["0", "0 + follow"]
    assert "stages 0 + follow: mean Dice" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [r["stages"] for r in rows] == ["0", "0 + follow"]


def test_follow_options_without_follow_and_frames_of_two_sizes_are_refused(stack_folders, generator, tmp_path,
                                                                          capsys):
    code = cli.main(["autoseg", "run", "--images", str(stack_folders / "images"), "--generator", str(generator),
                     "--out", str(tmp_path / "o"), "--stop-after", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "add --follow" in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "mixed").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "mixed" / "a.png")
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(tmp_path / "mixed" / "b.png")
    # no model is given: the check must come before SAM2 would be loaded
    code = cli.main(["autoseg", "run", "--images", str(tmp_path / "mixed"), "--generator", str(generator),
                     "--out", str(tmp_path / "o"), "--follow", "--sam2-weights", "/nonexistent.pt"])
    err = capsys.readouterr().err
    assert code == 2 and "b.png is 16×20 but a.png is 16×16" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
