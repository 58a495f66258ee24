"""The class average ("Avg." row of the RP-SAM2 paper's Table 1) next to the object-weighted figures."""

import numpy as np
import pytest

from napari_rpsam2.evaluation.protocol import summarize

# Table 1 of the paper (Cataract-1k test set, 10 seeds): per class mDSC mean, std, mHD95 mean, std
CLASSES = ("CC", "CF", "G", "IA", "IK", "KF", "LI", "PhT", "SK", "S")
TABLE1 = {
    "sam2": [(80.17, 3.05, 31.56, 9.94), (73.98, 1.96, 47.28, 15.41), (79.98, 1.79, 33.74, 6.92),
             (78.00, 1.23, 66.93, 5.99), (89.14, 9.71, 80.78, 27.62), (71.64, 5.56, 60.32, 27.63),
             (67.52, 4.34, 137.26, 16.96), (72.94, 2.25, 106.85, 8.01), (89.75, 3.03, 67.88, 75.68),
             (74.33, 1.04, 102.8, 9.99)],
    "rpsam2": [(81.16, 3.10, 22.98, 6.71), (73.40, 3.63, 51.14, 16.07), (78.29, 1.18, 41.45, 5.97),
               (81.42, 0.88, 55.39, 4.31), (91.52, 4.02, 72.35, 19.37), (73.12, 2.45, 59.17, 12.46),
               (75.41, 3.41, 109.19, 11.11), (75.33, 0.75, 89.28, 5.10), (92.85, 0.08, 5.38, 0.05),
               (75.03, 1.38, 71.96, 5.48)],
}
AVG_ROW = {"sam2": (77.74, 3.40, 73.54, 20.42), "rpsam2": (79.75, 2.09, 57.83, 8.66)}
SEEDS = list(range(10))


def _scores(rows):
    """Per-seed, per-object scores whose per-class mean and population std are exactly Table 1's.

    Seed offsets ``z`` have mean 0 and std 1 (one seed at +3, nine at −1/3, so no HD95 goes
    negative); each class has its high seed elsewhere, and class ``k`` has ``k + 1`` objects
    (identical within a class), so object weighting and class averaging differ.
    """
    z = np.full(10, -1.0 / 3.0)
    z[0] = 3.0
    dsc_cols, hd_cols, classes = [], [], []
    for k, (name, (dm, ds, hm, hs)) in enumerate(zip(CLASSES, rows)):
        zk = np.roll(z, k)
        for _ in range(k + 1):
            dsc_cols.append((dm + ds * zk) / 100.0)
            hd_cols.append(hm + hs * zk)
            classes.append(name)
    return np.stack(dsc_cols, 1), np.stack(hd_cols, 1), classes


@pytest.mark.parametrize("method", ["sam2", "rpsam2"])
def test_class_average_reproduces_the_papers_avg_row(method):
    dsc, hd, classes = _scores(TABLE1[method])
    report = summarize(dsc, hd, classes, SEEDS)
    for name, (dm, ds, hm, hs) in zip(CLASSES, TABLE1[method]):  # per class: Table 1 as it is
        row = report["per_class"][name]
        assert (row["mDSC"]["mean"], row["mDSC"]["std"]) == pytest.approx((dm, ds), abs=1e-9)
        assert (row["mHD95"]["mean"], row["mHD95"]["std"]) == pytest.approx((hm, hs), abs=1e-9)
    avg = report["class_average"]
    got = (avg["mDSC"]["mean"], avg["mDSC"]["std"], avg["mHD95"]["mean"], avg["mHD95"]["std"])
    # the paper prints two decimals (77.745 appears as 77.74, 20.415 as 20.42)
    assert got == pytest.approx(AVG_ROW[method], abs=0.0051)
    assert avg["classes"] == 10
    # the object-weighted figures are a different, smaller-spread number
    assert report["mDSC"]["mean"] != pytest.approx(avg["mDSC"]["mean"], abs=0.01)
    assert report["mDSC"]["std"] < avg["mDSC"]["std"] and report["mHD95"]["std"] < avg["mHD95"]["std"]
    per_seed = [s["mDSC"] for s in report["per_seed"]]
    assert report["mDSC"]["mean"] == pytest.approx(np.mean(per_seed))
    assert report["mDSC"]["std"] == pytest.approx(np.std(per_seed))


def test_one_class_the_two_means_agree():
    rng = np.random.default_rng(0)
    dsc, hd = rng.uniform(0, 1, (5, 7)), rng.uniform(0, 50, (5, 7))
    report = summarize(dsc, hd, ["tool"] * 7, range(5))
    assert report["class_average"]["mDSC"] == pytest.approx(report["mDSC"])
    assert report["class_average"]["mHD95"] == pytest.approx(report["mHD95"])
