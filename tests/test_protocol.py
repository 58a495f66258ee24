"""The 10-seed evaluation protocol."""

import numpy as np
import pytest

from napari_rpsam2.evaluation.protocol import EvaluationCancelled, draw_clicks, evaluate
from napari_rpsam2.sample_data import CLASS_NAMES
from napari_rpsam2.training.data import stack_from_arrays


@pytest.fixture(scope="module")
def one_slice(instrument_stack):
    image, labels = instrument_stack
    return stack_from_arrays(image[0], labels[0], class_names=CLASS_NAMES)


def test_clicks_are_seeded_and_inside(one_slice):
    a = draw_clicks(one_slice, range(10))
    b = draw_clicks(one_slice, range(10))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10, 2, 2)
    assert len({tuple(p) for p in a[:, 0]}) > 5  # seeds give different clicks
    for o_i, obj in enumerate(one_slice.objects()):
        mask = one_slice.object_mask(obj)
        assert mask[a[:, o_i, 0].astype(int), a[:, o_i, 1].astype(int)].all()


def test_structure_and_fresh_block_equals_sam2(model, frame0, one_slice):
    ticks = []
    report = evaluate(model, one_slice, clicks=3, progress=lambda d, t: ticks.append((d, t)))
    assert ticks[-1] == (1, 1)
    assert report["protocol"]["clicks_per_object"] == 3 and report["protocol"]["objects"] == 2
    for method in ("sam2", "rpsam2"):
        r = report[method]
        assert set(r["mDSC"]) == {"mean", "std"} and set(r["mHD95"]) == {"mean", "std"}
        assert 0.0 <= r["mDSC"]["mean"] <= 100.0 and r["mHD95"]["mean"] >= 0.0
        assert set(r["per_class"]) == {"forceps", "knife"}
        assert [s["seed"] for s in r["per_seed"]] == [0, 1, 2]
        per_seed = [s["mDSC"] for s in r["per_seed"]]
        assert r["mDSC"]["mean"] == pytest.approx(np.mean(per_seed))
        assert r["mDSC"]["std"] == pytest.approx(np.std(per_seed))
        avg = r["class_average"]  # the paper's Avg. row: plain means over the two classes
        for key in ("mDSC", "mHD95"):
            for stat in ("mean", "std"):
                assert avg[key][stat] == pytest.approx(np.mean([c[key][stat] for c in r["per_class"].values()]))
    assert report["protocol"]["hd95"] == "pooled"
    # the other HD95 convention: same clicks and masks, so the same Dice and an HD95 never smaller
    directed = evaluate(model, one_slice, clicks=3, methods=("sam2",), hd95_convention="max-directed")
    assert directed["protocol"]["hd95"] == "max-directed"
    assert directed["sam2"]["mDSC"] == report["sam2"]["mDSC"]
    for a, b in zip(directed["sam2"]["per_seed"], report["sam2"]["per_seed"]):
        assert a["mHD95"] >= b["mHD95"] - 1e-9
    # an untrained shift block is the identity: both columns are the same numbers
    assert report["sam2"] == report["rpsam2"]
    with pytest.raises(EvaluationCancelled):
        evaluate(model, one_slice, clicks=1, cancel=lambda: True)
    with pytest.raises(ValueError, match="unknown evaluation method"):
        evaluate(model, one_slice, methods=("medsam",))
