"""`rpsam2 oneshot` and `rpsam2 oneshot-eval` on small files."""

import csv
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_rpsam2.cli import main


@pytest.fixture(scope="module")
def frames(tmp_path_factory, instrument_stack):
    images, labels = instrument_stack
    root = tmp_path_factory.mktemp("oneshot")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for i in range(2):
        Image.fromarray(images[i]).save(root / "images" / f"f{i}.png")
        Image.fromarray((labels[i] == 1).astype(np.uint8)).save(root / "labels" / f"f{i}.png")
    targets = root / "targets"
    targets.mkdir()
    Image.fromarray(images[1]).save(targets / "f1.png")
    return root


def _run(args, model):
    return main([*args, "--sam2-weights", "random", "--device", "cpu", "--quiet"], model=model)


def test_oneshot_writes_labels_prompts_and_report(frames, tmp_path, model, capsys):
    out = tmp_path / "out"
    code = _run(["oneshot", "--reference-image", str(frames / "images" / "f0.png"),
                 "--reference-labels", str(frames / "labels" / "f0.png"), "--images", str(frames / "targets"),
                 "--method", "persam", "--out", str(out)], model)
    assert code == 0, capsys.readouterr().err
    labels = tifffile.imread(out / "labels" / "f1.tif")
    assert labels.shape == (256, 320) and set(np.unique(labels)) <= {0, 1}
    with open(out / "prompts.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["slice", "object", "row", "col", "label"]
    assert [(r["slice"], r["label"]) for r in rows] == [("f1", "1"), ("f1", "0")]
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "persam" and report["object_ids"] == [1]
    assert report["slices"][0]["objects"][0]["area"] == int((labels == 1).sum())


def test_oneshot_prompts_feed_propagate_as_they_are(frames, tmp_path, model, capsys):
    """A person runs oneshot, then hands its prompts.csv (slices named by file) to propagate."""
    out = tmp_path / "out"
    assert _run(["oneshot", "--reference-image", str(frames / "images" / "f0.png"),
                 "--reference-labels", str(frames / "labels" / "f0.png"), "--images", str(frames / "targets"),
                 "--method", "persam", "--out", str(out)], model) == 0, capsys.readouterr().err
    propagated = tmp_path / "propagated.tif"
    code = _run(["propagate", "--images", str(frames / "images"), "--prompts", str(out / "prompts.csv"),
                 "--out", str(propagated), "--no-refine"], model)
    assert code == 0, capsys.readouterr().err
    written = tifffile.imread(propagated)
    oneshot = tifffile.imread(out / "labels" / "f1.tif")
    assert written.shape == (2, *oneshot.shape)
    # the prompts sit on f1 (slice 1): that slice gets the object SAM2 decodes from those clicks
    assert (written[1] == 1).any() and set(np.unique(written)) <= {0, 1}
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("slice,object,row,col\nf7,1,10,10\n")
    assert _run(["propagate", "--images", str(frames / "images"), "--prompts", str(wrong),
                 "--out", str(tmp_path / "x.tif")], model) == 2
    err = capsys.readouterr().err
    assert "slice 'f7' is neither a slice number nor the name of an image" in err


def test_oneshot_refuses_labels_of_another_size(frames, tmp_path, model, capsys):
    bad = tmp_path / "small.png"
    Image.fromarray(np.ones((10, 10), np.uint8)).save(bad)
    code = _run(["oneshot", "--reference-image", str(frames / "images" / "f0.png"), "--reference-labels", str(bad),
                 "--images", str(frames / "targets"), "--method", "p2sam", "--out", str(tmp_path / "o")], model)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "(256, 320)" in err and "(10, 10)" in err
    assert not (tmp_path / "o").exists()


def test_oneshot_eval_writes_json_csv_and_figure(frames, tmp_path, model, capsys):
    out = tmp_path / "eval.json"
    code = _run(["oneshot-eval", "--images", str(frames / "images"), "--labels", str(frames / "labels"),
                 "--methods", "persam", "--reference", "0", "--out", str(out)], model)
    stdout, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert (row["reference"], row["target"], row["object"]) == (0, 1, 1)
    assert row["positives"] == 1 and row["negatives"] == 1
    assert report["methods"]["persam"]["dice"]["mean"] == pytest.approx(row["dice"])
    # Dice in percent, as `rpsam2 evaluate` prints it: 1 positive click inside the object is 100 % precision
    assert 0 <= row["dice"] <= 100 and row["positive_precision"] in (0.0, 100.0)
    header, line = stdout.splitlines()[:2]
    assert "Dice %" in header and line.split()[:2] == ["persam", f"{row['dice']:.2f}"]
    assert out.with_suffix(".csv").read_text().startswith("method,reference,target")
    assert out.with_suffix(".png").stat().st_size > 0
    assert _run(["oneshot-eval", "--images", str(frames / "images"), "--labels", str(frames / "labels"),
                 "--methods", "sam3", "--out", str(out)], model) == 2


def test_oneshot_medpersam_writes_the_mask_prompts(frames, tmp_path, model, capsys):
    out = tmp_path / "med"
    code = _run(["oneshot", "--reference-image", str(frames / "images" / "f0.png"),
                 "--reference-labels", str(frames / "labels" / "f0.png"), "--images", str(frames / "targets"),
                 "--method", "medpersam", "--warp-steps", "2", "--rounds", "1", "--retrain-epochs", "1",
                 "--organ", "bilateral", "--clicks", "3", "--kernel", "2", "--out", str(out)], model)
    assert code == 0, capsys.readouterr().err
    prompt = tifffile.imread(out / "mask_prompts" / "f1_object1.tif")
    assert prompt.shape == (256, 320) and set(np.unique(prompt)) <= {0, 1}
    report = json.loads((out / "report.json").read_text())
    assert report["warping"]["parameters"] > 0 and report["warping"]["config"]["steps"] == 2
    assert report["warping"]["rounds"] == 1 and report["warping"]["config"]["retrain_epochs"] == 1
    assert report["options"] | {"organ": "bilateral", "positives": 3, "negatives": 3, "kernel": 2} == report["options"]
    with open(out / "prompts.csv", newline="") as fh:
        labels = [r["label"] for r in csv.DictReader(fh)]
    assert set(labels) <= {"0", "1"} and 1 <= labels.count("1") <= 3 and labels.count("0") <= 3


def test_oneshot_method_settings_are_checked_before_the_model_loads(frames, tmp_path, model, capsys):
    base = ["oneshot", "--reference-image", str(frames / "images" / "f0.png"), "--reference-labels",
            str(frames / "labels" / "f0.png"), "--images", str(frames / "targets"), "--out", str(tmp_path / "o")]
    assert _run([*base, "--method", "p2sam", "--negatives", "0-3"], None) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--negatives" in err and "1-5" in err
    assert _run([*base, "--method", "medpersam", "--rounds", "-1"], None) == 2
    assert "rounds" in capsys.readouterr().err and not (tmp_path / "o").exists()
