"""The ``rpsam2`` command, run in-process on a tiny PNG dataset written by the test."""

from __future__ import annotations

import csv
import json
import math
import os
import signal

import numpy as np
import pytest
from PIL import Image

from napari_rpsam2 import cli
from napari_rpsam2.cli import support as cli_support
from napari_rpsam2.model import read_header
from napari_rpsam2.sample_data import make_instrument_stack


def _write(folder, name, array):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / f"{name}.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """train/ (slice 0), val/ (slice 1), eval/ (slices 0, 1); labels as uint8 PNGs."""
    root = tmp_path_factory.mktemp("data")
    image, labels = make_instrument_stack(n_slices=2)
    for split, idx in (("train", [0]), ("val", [1]), ("eval", [0, 1])):
        for i in idx:
            _write(root / split / "images", f"frame{i}", image[i])
            _write(root / split / "labels", f"frame{i}", labels[i].astype(np.uint8))
    return root


def run(capsys, args, model=None):
    code = cli.main(args, model=model)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rpsam2: error: ") and "Traceback" not in err
    for w in words:
        assert w in lines[0]


def test_evaluate_writes_json_csv_png(capsys, data, model, tmp_path):
    out = tmp_path / "report.json"
    code, stdout, _ = run(capsys, ["evaluate", "--images", str(data / "eval/images"), "--labels",
                                   str(data / "eval/labels"), "--clicks", "3", "--out", str(out),
                                   "--sam2-weights", "random", "--quiet"], model)
    assert code == 0
    report = json.loads(out.read_text())
    diag = math.hypot(256, 320)
    for method in ("sam2", "rpsam2"):
        r = report[method]
        assert 0 <= r["mDSC"]["mean"] <= 100 and r["mDSC"]["std"] >= 0
        assert 0 <= r["mHD95"]["mean"] <= diag and r["mHD95"]["std"] >= 0
        assert r["per_class"]
    # without a shift block RP-SAM2 is the identity, so both methods agree
    assert report["rpsam2"]["mDSC"]["mean"] == pytest.approx(report["sam2"]["mDSC"]["mean"])
    with open(out.with_suffix(".csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    n_classes = len(report["sam2"]["per_class"])
    assert len(rows) == 2 * (n_classes + 2)
    weighted = [r for r in rows if r["class"] == "object-weighted"]
    assert float(weighted[0]["mDSC_mean"]) == pytest.approx(report["sam2"]["mDSC"]["mean"], abs=1e-3)
    average = [r for r in rows if r["class"] == "class average"]
    assert float(average[0]["mHD95_std"]) == pytest.approx(report["sam2"]["class_average"]["mHD95"]["std"],
                                                          abs=1e-3)
    assert report["protocol"]["hd95"] == "pooled" and report["run"]["merge_gap"] is None  # instance labels
    with Image.open(out.with_suffix(".png")) as im:
        assert im.format == "PNG"
    assert "sam2" in stdout and "rpsam2" in stdout and "class average" in stdout and "pooled" in stdout


def test_train_writes_checkpoint_and_log_then_heatmap_uses_it(capsys, data, model, tmp_path, monkeypatch):
    ckpt, log = tmp_path / "block.safetensors", tmp_path / "train.jsonl"
    code, stdout, err = run(capsys, [
        "train", "--images", str(data / "train/images"), "--labels", str(data / "train/labels"),
        "--val-images", str(data / "val/images"), "--val-labels", str(data / "val/labels"),
        "--epochs", "1", "--batch-size", "2", "--clicks", "2", "--grid-stride", "16", "--val-clicks", "2",
        "--out", str(ckpt), "--log", str(log),
        "--sam2-weights", "random", "--quiet"], model)
    assert code == 0, err
    header = read_header(ckpt)
    assert header["backbone"] == model.backbone.name
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and math.isfinite(lines[0]["loss"])
    assert "epoch" in stdout and str(ckpt) in stdout

    # Ctrl-C while resuming: stops cleanly, the checkpoint and the log stay as they were
    before = ckpt.read_bytes()
    last = tmp_path / "block.last.safetensors"
    assert last.exists()
    real_bars = cli_support.ProgressBars.__call__

    def press_ctrl_c(self, *a):
        os.kill(os.getpid(), signal.SIGINT)
        real_bars(self, *a)

    monkeypatch.setattr(cli_support.ProgressBars, "__call__", press_ctrl_c)
    code, _, err = run(capsys, [
        "train", "--images", str(data / "train/images"), "--labels", str(data / "train/labels"),
        "--epochs", "3", "--grid-stride", "16", "--resume", str(last), "--out", str(ckpt), "--log", str(log),
        "--sam2-weights", "random", "--quiet"], model)
    monkeypatch.undo()
    assert code == 130 and "cancelled" in err and str(ckpt) in err and "Traceback" not in err
    assert ckpt.read_bytes() == before and len(log.read_text().splitlines()) == 1

    out = tmp_path / "map.npy"
    code, stdout, err = run(capsys, [
        "heatmap", "--image", str(data / "train/images/frame0.png"), "--labels",
        str(data / "train/labels/frame0.png"), "--object", "2", "--stride", "16",
        "--shift-block", str(ckpt), "--out", str(out), "--sam2-weights", "random", "--quiet"], model)
    assert code == 0, err
    refined, plain = np.load(out), np.load(tmp_path / "map_sam2.npy")
    assert refined.shape == plain.shape == (256, 320)
    assert np.array_equal(np.isnan(refined), np.isnan(plain))
    assert "rpsam2" in stdout and "sam2" in stdout


def test_heatmap_npy_has_image_shape_and_unit_range(capsys, data, model, tmp_path):
    out = tmp_path / "forceps.npy"
    code, stdout, err = run(capsys, [
        "heatmap", "--image", str(data / "eval/images/frame1.png"), "--labels",
        str(data / "eval/labels/frame1.png"), "--object", "1", "--stride", "14", "--out", str(out),
        "--sam2-weights", "random", "--quiet"], model)
    assert code == 0, err
    m = np.load(out)
    labels = np.asarray(Image.open(data / "eval/labels/frame1.png"))
    assert m.shape == labels.shape and m.dtype == np.float32
    inside = np.isfinite(m)
    assert inside.any() and m[inside].min() >= 0 and m[inside].max() <= 1
    assert (labels[inside] == 1).mean() > 0.5  # the grid cells sit on the object
    with Image.open(out.with_suffix(".png")) as im:
        assert im.format == "PNG"
    assert "Dice mean" in stdout


def test_embed_computes_then_finds(capsys, data, model, tmp_path):
    args = ["embed", "--images", str(data / "train/images"), "--cache", str(tmp_path / "cache"),
            "--sam2-weights", "random", "--quiet"]
    code, first, _ = run(capsys, args, model)
    assert code == 0 and "1 computed, 0 found" in first
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    code, second, _ = run(capsys, args, model)
    assert code == 0 and "0 computed, 1 found" in second


def test_info_loads_a_model_and_prints_the_parameter_count(capsys, model):
    code, out, _ = run(capsys, ["info", "--sam2-weights", "random", "--device", "cpu"])
    assert code == 0
    assert f"{model.shift_block.parameter_count():,} trainable parameters" in out


@pytest.fixture()
def bad_checkpoint(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + bytes(64))
    return path


@pytest.mark.parametrize("case", ["missing_folder", "no_matching_names", "bad_checkpoint",
                                  "missing_object", "missing_out_folder", "unknown_option",
                                  "half_validation", "bad_weights_file"])
def test_bad_input_gives_one_line_and_nonzero_exit(capsys, data, model, tmp_path, bad_checkpoint, case):
    ev = ["evaluate", "--images", str(data / "eval/images"), "--labels", str(data / "eval/labels"),
          "--out", str(tmp_path / "r.json"), "--sam2-weights", "random", "--quiet"]
    other = tmp_path / "other_labels"
    _write(other, "unrelated", np.zeros((8, 8), np.uint8))
    args, words = {
        "missing_folder": (ev[:2] + [str(tmp_path / "nope")] + ev[3:], ["does not exist"]),
        "no_matching_names": (ev[:4] + [str(other)] + ev[5:], ["same name"]),
        "bad_checkpoint": (ev + ["--shift-block", str(bad_checkpoint)], [bad_checkpoint.name]),
        "missing_object": (["heatmap", "--image", str(data / "eval/images/frame0.png"), "--labels",
                            str(data / "eval/labels/frame0.png"), "--object", "7", "--out",
                            str(tmp_path / "m.npy")], ["object 7"]),
        "missing_out_folder": (ev[:5] + ["--out", str(tmp_path / "no" / "r.json")] + ev[7:], ["folder"]),
        "unknown_option": (ev + ["--frobnicate"], ["--frobnicate"]),
        "half_validation": (["train", "--images", str(data / "train/images"), "--labels",
                             str(data / "train/labels"), "--val-images", str(data / "val/images"),
                             "--out", str(tmp_path / "b.safetensors")], ["--val-labels"]),
        "bad_weights_file": (["info", "--sam2-weights", str(bad_checkpoint)], [bad_checkpoint.name]),
    }[case]
    code, _, err = run(capsys, args, None if case == "bad_weights_file" else model)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "m.npy").exists()


def test_first_ctrl_c_only_asks_to_stop():
    with cli_support.sigint_cancel() as cancel:
        assert not cancel()
        os.kill(os.getpid(), signal.SIGINT)  # handled: no KeyboardInterrupt
        assert cancel()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_evaluate_hd95_convention_and_merge_gap(capsys, model, tmp_path):
    """Binary labels of one two-pronged tool: --merge-gap decides 1 or 2 objects; --hd95 is recorded."""
    image, labels = make_instrument_stack(n_slices=1, shape=(96, 128))
    prongs = np.zeros((96, 128), np.uint8)
    prongs[10:80, 40:44] = 255
    prongs[10:80, 52:56] = 255  # 9 px from the first prong
    _write(tmp_path / "images", "f", image[0])
    _write(tmp_path / "labels", "f", prongs)
    base = ["evaluate", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
            "--clicks", "1", "--sam2-weights", "random", "--quiet"]
    out = tmp_path / "joined.json"
    code, stdout, err = run(capsys, base + ["--out", str(out), "--hd95", "max-directed"], model)
    assert code == 0, err
    joined = json.loads(out.read_text())
    assert joined["protocol"]["objects"] == 1 and joined["run"]["merge_gap"] == 12.0
    assert joined["protocol"]["hd95"] == "max-directed" and "max-directed" in stdout
    out = tmp_path / "split.json"
    code, _, err = run(capsys, base + ["--out", str(out), "--merge-gap", "0"], model)
    assert code == 0, err
    assert json.loads(out.read_text())["protocol"]["objects"] == 2
    code, _, err = run(capsys, base + ["--out", str(out), "--hd95", "mean"], model)
    assert_one_line_error(code, err, "--hd95", "max-directed")
    code, _, err = run(capsys, base + ["--out", str(out), "--merge-gap", "-3"], model)
    assert_one_line_error(code, err, "merge gap")


def test_train_refuses_to_replace_another_runs_checkpoint(capsys, data, model, tmp_path):
    """An existing checkpoint stays byte for byte unless --overwrite is given."""
    from napari_rpsam2.model import ShiftBlock
    from napari_rpsam2.model.checkpoint import save_checkpoint

    ckpt = tmp_path / "block.safetensors"
    save_checkpoint(ckpt, ShiftBlock(), model.backbone.name, training={"epoch": 900, "run": "an-older-run"})
    before = ckpt.read_bytes()
    args = ["train", "--images", str(data / "train/images"), "--labels", str(data / "train/labels"),
            "--epochs", "1", "--clicks", "1", "--grid-stride", "32", "--val-fraction", "0", "--out", str(ckpt),
            "--sam2-weights", "random", "--quiet"]
    code, _, err = run(capsys, args, model)
    assert_one_line_error(code, err, "already exists", "--overwrite")
    assert ckpt.read_bytes() == before and not (tmp_path / "block.last.safetensors").exists()
    code, stdout, err = run(capsys, [*args, "--overwrite"], model)
    assert code == 0, err
    assert read_header(ckpt)["training"]["run"] not in (None, "an-older-run") and str(ckpt) in stdout
