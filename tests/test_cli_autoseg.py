"""``rpsam2 autoseg train | run | evaluate`` on generated discs and squares written as PNG files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_rpsam2 import cli
from napari_rpsam2.autoseg import read_generator_header
from shapes_data import discs_and_squares

TINY = ["--input-size", "32", "--features", "4,4,8,8,16,4", "--quiet"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """8 training images, 2 test images; labels 50 (disc) and 90 (square) as uint8 PNGs."""
    root = tmp_path_factory.mktemp("shapes")
    for split, (n, seed) in {"train": (8, 0), "test": (2, 7)}.items():
        images, classes = discs_and_squares(n, size=48, seed=seed)
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n):
            picture = (np.clip(images[i], 0, 1) * 255).astype(np.uint8)
            Image.fromarray(picture).save(root / split / "images" / f"s{i}.png")
            Image.fromarray(np.choose(classes[i], [0, 50, 90]).astype(np.uint8)).save(root / split / "labels" / f"s{i}.png")
    (root / "classes.json").write_text(json.dumps({"50": "disc", "90": "square"}))
    return root


@pytest.fixture(scope="module")
def generator(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "generator.safetensors"
    code = cli.main(["autoseg", "train", "--images", str(folders / "train/images"), "--labels",
                     str(folders / "train/labels"), "--class-map", str(folders / "classes.json"), "--out", str(out),
                     "--epochs", "2", "--device", "cpu", *TINY])
    assert code == 0
    return out


def test_train_writes_a_generator_with_the_class_maps_names(generator):
    header = read_generator_header(generator)
    assert header["classes"] == ["disc", "square"]
    assert header["training"]["images"] == 8 and header["training"]["val_slices"] == 2


def test_run_without_sam2_writes_instances_and_class_maps_with_the_same_names(folders, generator, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["autoseg", "run", "--images", str(folders / "test/images"), "--generator", str(generator),
                     "--out", str(out), "--stages", "0", "--min-area", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.tif")) == ["s0.tif", "s1.tif"]
    labels, classes = tifffile.imread(out / "s0.tif"), tifffile.imread(out / "classes" / "s0.tif")
    assert labels.shape == classes.shape == (48, 48)
    rows = list(csv.DictReader(open(out / "objects.csv")))
    assert {r["file"] for r in rows} <= {"s0.png", "s1.png"}
    for r in (r for r in rows if r["file"] == "s0.png"):  # every object is one class in the class map
        assert set(np.unique(classes[labels == int(r["label"])])) == {1 + ["disc", "square"].index(r["class"])}


def test_run_with_one_sam2_stage(folders, generator, tmp_path, model, capsys):
    out = tmp_path / "out"
    (tmp_path / "one").mkdir()
    Image.open(folders / "test/images/s0.png").save(tmp_path / "one" / "s0.png")
    code = cli.main(["autoseg", "run", "--images", str(tmp_path / "one"), "--generator", str(generator),
                     "--out", str(out), "--stages", "1", "--min-area", "1", "--sam2-weights", "random", "--quiet"],
                    model=model)
    assert code == 0, capsys.readouterr().err
    assert "1 label files" in capsys.readouterr().out and (out / "classes" / "s0.tif").exists()


def test_evaluate_reports_dice_and_hd95_per_class_for_each_stage(folders, generator, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = cli.main(["autoseg", "evaluate", "--images", str(folders / "test/images"), "--labels",
                     str(folders / "test/labels"), "--class-map", str(folders / "classes.json"), "--generator",
                     str(generator), "--stages", "0", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    per_class = report["stages"]["0"]["per_class"]
    assert set(per_class) == {"disc", "square"}
    for entry in per_class.values():
        assert entry["images"] == 2 and 0 <= entry["dice"] <= 100 and entry["hd95"] >= 0
    assert out.with_suffix(".csv").read_text().startswith("stages,class,dice_percent,hd95_px,images")


@pytest.mark.parametrize("args, words", [
    (["autoseg", "train", "--images", "nowhere", "--labels", "x", "--out", "g.safetensors"], ["images folder"]),
    (["autoseg", "train", "--images", ".", "--labels", ".", "--out", "g.pt"], [".safetensors"]),
    (["autoseg", "run", "--images", ".", "--generator", "missing.safetensors", "--out", "o"], ["prompt generator"]),
    (["autoseg", "run", "--images", ".", "--generator", "g", "--out", "o", "--stages", "3"], ["--stages"]),
])
def test_bad_input_is_one_line_and_exit_2(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("rpsam2: error:"), err
    assert all(w in err for w in words), err


def test_a_safetensors_file_that_is_not_a_generator_is_refused(tmp_path, capsys):
    from safetensors.torch import save_file
    import torch

    save_file({"x": torch.zeros(1)}, str(tmp_path / "g.safetensors"))
    (tmp_path / "im").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "im" / "a.png")
    code = cli.main(["autoseg", "run", "--images", str(tmp_path / "im"), "--generator", str(tmp_path / "g.safetensors"),
                     "--out", str(tmp_path / "o"), "--stages", "0"])
    assert code == 2 and "not a prompt generator" in capsys.readouterr().err


def test_finetune_writes_adapters_and_a_missing_adapter_file_is_refused(tmp_path, model, capsys):
    """``rpsam2 finetune`` on one small image, then ``--adapters`` on ``autoseg run`` (through make_model)."""
    from napari_rpsam2.model.adapters import read_adapter_header
    from napari_rpsam2.sample_data import make_instrument_stack

    image, labels = make_instrument_stack(n_slices=1, shape=(64, 80))
    for sub, arr in (("im", image[0]), ("lab", labels[0].astype(np.uint8))):
        (tmp_path / sub).mkdir()
        Image.fromarray(arr).save(tmp_path / sub / "f.png")
    out = tmp_path / "adapters.safetensors"
    code = cli.main(["finetune", "--images", str(tmp_path / "im"), "--labels", str(tmp_path / "lab"), "--out", str(out),
                     "--epochs", "1", "--no", "encoder", "neck", "memory", "--sam2-weights", "random", "--quiet"],
                    model=model)
    assert code == 0, capsys.readouterr().err
    header = read_adapter_header(out)
    assert header["backbone"] == model.backbone.name and header["config"]["encoder"] is False
    assert model.backbone.adapters is None  # the lent backbone was copied, not changed
    code = cli.main(["finetune", "--images", str(tmp_path / "im"), "--labels", str(tmp_path / "lab"),
                     "--out", str(tmp_path / "b.safetensors"), "--adapters", str(tmp_path / "missing.safetensors")])
    assert code == 2 and "SAM2 adapter file" in capsys.readouterr().err


def test_finetune_with_clips_trains_the_memory_adapters_and_memory_alone_needs_clips(tmp_path, model, capsys):
    """``--clips``: three moving frames, memory-attention adapters only, trained through SAM2's memory."""
    from safetensors.torch import load_file

    from napari_rpsam2.model.adapters import read_adapter_header
    from napari_rpsam2.sample_data import make_instrument_stack

    image, labels = make_instrument_stack(n_slices=3, shape=(64, 80))
    for sub in ("im", "lab"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        Image.fromarray(image[i]).save(tmp_path / "im" / f"f{i}.png")
        Image.fromarray(labels[i].astype(np.uint8)).save(tmp_path / "lab" / f"f{i}.png")
    memory_only = ["finetune", "--images", str(tmp_path / "im"), "--labels", str(tmp_path / "lab"),
                   "--epochs", "1", "--no", "encoder", "neck", "decoder", "--quiet"]
    code = cli.main([*memory_only, "--out", str(tmp_path / "a.safetensors")], model=model)
    assert code == 2 and "add --clips" in capsys.readouterr().err
    out = tmp_path / "b.safetensors"
    code = cli.main([*memory_only, "--out", str(out), "--clips", "--clip-length", "2"], model=model)
    assert code == 0, capsys.readouterr().err
    training = read_adapter_header(out)["training"]
    assert training["clips"] is True and training["clip_length"] == 2 and training["final_clip_loss"] > 0
    weights = load_file(str(out))
    assert any(float(v.abs().sum()) > 0 for k, v in weights.items() if "point_out" in k)  # they moved off zero


@pytest.mark.parametrize("command", [["autoseg", "train"], ["autoseg", "evaluate", "--generator", "g.safetensors"],
                                     ["finetune"]])
def test_annotated_folder_commands_refuse_a_missing_labels_folder_or_class_map_alike(tmp_path, capsys, command):
    (tmp_path / "im").mkdir()
    out = str(tmp_path / ("r.json" if "evaluate" in command else "x.safetensors"))
    base = [*command, "--images", str(tmp_path / "im"), "--out", out]
    assert cli.main([*base, "--labels", str(tmp_path / "nolabels")]) == 2
    assert f"labels folder {tmp_path / 'nolabels'} does not exist" in capsys.readouterr().err
    assert cli.main([*base, "--labels", str(tmp_path / "im"), "--class-map", str(tmp_path / "c.json")]) == 2
    assert f"class map file {tmp_path / 'c.json'} does not exist" in capsys.readouterr().err
