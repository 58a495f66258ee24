"""Report files: JSON (strict, atomic), CSV rows per method × class, PNG figure."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from napari_rpsam2._atomic import OutputError
from napari_rpsam2.evaluation import report as rep


def _fake_report(rng: np.random.Generator, classes=("forceps", "knife"), seeds=10) -> dict:
    """A report shaped like evaluation.protocol.evaluate's, from random per-seed numbers."""
    out = {"protocol": {"clicks": seeds, "empty_prediction": "Dice 0, HD95 = image diagonal"}}
    for method in ("sam2", "rpsam2"):
        per_seed_d = rng.uniform(50, 90, seeds)
        per_seed_h = rng.uniform(5, 80, seeds)
        per_class = {}
        for c in classes:
            d, h = rng.uniform(40, 95, seeds), rng.uniform(3, 90, seeds)
            per_class[c] = {"mDSC": {"mean": float(d.mean()), "std": float(d.std())},
                            "mHD95": {"mean": float(h.mean()), "std": float(h.std())}, "objects": 3}
        out[method] = {
            "mDSC": {"mean": np.float32(per_seed_d.mean()), "std": float(per_seed_d.std())},
            "class_average": {k: {s: float(np.mean([v[k][s] for v in per_class.values()])) for s in ("mean", "std")}
                              for k in ("mDSC", "mHD95")},
            "mHD95": {"mean": float(per_seed_h.mean()), "std": np.float64(per_seed_h.std())},
            "per_class": per_class,
            "per_seed": [{"seed": s, "mDSC": float(d), "mHD95": float(h)}
                         for s, (d, h) in enumerate(zip(per_seed_d, per_seed_h))],
        }
    return out


def test_json_roundtrip_is_strict_and_converts_numpy(tmp_path):
    r = _fake_report(np.random.default_rng(0))
    r["sam2"]["per_class"]["knife"]["mHD95"]["std"] = float("nan")  # e.g. one seed only
    path = rep.write_json(r, tmp_path / "report.json")
    text = path.read_text()
    assert "NaN" not in text
    back = json.loads(text)
    assert back["sam2"]["per_class"]["knife"]["mHD95"]["std"] is None
    assert back["sam2"]["mDSC"]["mean"] == pytest.approx(float(r["sam2"]["mDSC"]["mean"]), rel=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


def test_csv_has_a_row_per_method_and_class_plus_both_summaries(tmp_path):
    r = _fake_report(np.random.default_rng(1), classes=("a", "b", "c"))
    rep.write_csv(r, tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(row["method"], row["class"]) for row in rows] == [
        (m, c) for m in ("sam2", "rpsam2") for c in ("a", "b", "c", "object-weighted", "class average")]
    for row in rows:
        method, cls = row["method"], row["class"]
        src = {"object-weighted": r[method], "class average": r[method]["class_average"]}.get(
            cls, r[method]["per_class"].get(cls))
        assert row["objects"] == ("3" if cls in ("a", "b", "c") else "9")
        assert float(row["mDSC_mean"]) == pytest.approx(float(src["mDSC"]["mean"]), abs=1e-4)
        assert float(row["mHD95_std"]) == pytest.approx(float(src["mHD95"]["std"]), abs=1e-4)


def test_seed_values_and_class_rows_accept_list_and_mapping_forms():
    r = _fake_report(np.random.default_rng(2))["rpsam2"]
    as_list = rep.seed_values(r, "mDSC")
    r2 = dict(r, per_seed={"mDSC": [v for _, v in as_list], "mHD95": [0.0] * len(as_list)})
    assert rep.seed_values(r2, "mDSC") == as_list
    r3 = dict(r, per_class=[dict(v, **{"class": k}) for k, v in r["per_class"].items()])
    assert rep.class_rows(r3) == rep.class_rows(r)


def test_figure_is_a_png_that_decodes(tmp_path):
    path = rep.write_figure(_fake_report(np.random.default_rng(3)), tmp_path / "r.png", title="t")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 500 and im.size[1] > 200
        assert np.asarray(im).std() > 0  # something was drawn


def test_figure_without_methods_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no method"):
        rep.write_figure({"protocol": {}}, tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()


def test_failed_writes_keep_the_old_file(tmp_path):
    path = tmp_path / "report.png"
    path.write_bytes(b"old")
    with pytest.raises(ValueError):
        rep.write_figure({}, path)
    assert path.read_bytes() == b"old"
    with pytest.raises(OutputError, match="does not exist"):
        rep.write_json({"x": 1}, tmp_path / "missing" / "report.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.png"]
