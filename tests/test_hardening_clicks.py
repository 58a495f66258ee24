"""Bad clicks: outside, on the border, hundreds at once, and during a running encode."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import pytest

from napari_rpsam2.model import ImageEmbedding, PromptError


@pytest.mark.parametrize("click", [(-1, 10), (10, -0.6), (256, 10), (10, 319.6), (1e9, 0)])
def test_click_outside_the_image_is_refused(model, frame0, click):
    image, _, _ = frame0
    with pytest.raises(PromptError, match=r"outside the 256×320 image; click inside the image"):
        model.segment(image, [click])


@pytest.mark.parametrize(
    "points,labels,fragment",
    [
        ([], None, "no clicks"),
        ([[1, 2, 3]], None, "drop the slice index"),
        ([[[1, 2]]], None, r"shape \(1, 1, 2\)"),
        ([[np.nan, 1]], None, "non-finite"),
        ([["a", "b"]], None, "must be numbers"),
        ([[1, 2], [3, 4]], [1], "2 clicks but 1 labels"),
        ([[1, 2]], [2], "1 \\(positive\\) or 0"),
    ],
)
def test_malformed_clicks_are_refused(model, frame0, points, labels, fragment):
    image, _, _ = frame0
    with pytest.raises(PromptError, match=fragment):
        model.segment(image, points, labels)


def _inside(points: np.ndarray, hw: tuple[int, int]) -> bool:
    return bool(np.all(points >= 0) and np.all(points[:, 0] <= hw[0] - 1) and np.all(points[:, 1] <= hw[1] - 1))


BORDER = [(-0.5, -0.5), (255.5, 319.5), (0, 319), (255, 0), (-0.5, 160), (128, 319.5)]


def test_clicks_exactly_on_the_border_work(model, moving_model, frame0):
    image, _, emb = frame0
    corner = model.segment(image, [(-0.5, -0.5)])  # identity block: only the clamp acts
    np.testing.assert_allclose(corner.points, [[0, 0]])
    moved = []
    for click in BORDER:
        res = moving_model.segment(image, [click])
        assert res.mask.shape == (256, 320)
        assert _inside(res.points, (256, 320)), (click, res.points)
        moved.append(res.points[0])
    # the block really moves clicks, so the clamp at the border is exercised
    assert np.abs(np.asarray(moved) - np.asarray(BORDER)).max() > 5


def _peak_rss_during(fn) -> tuple[object, int]:
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    try:
        out = fn()
    finally:
        done.set()
        t.join()
    return out, peak[0] - base


def test_hundreds_of_clicks_in_one_prompt(moving_model, frame0):
    image, labels, _ = frame0
    rng = np.random.default_rng(0)
    clicks = np.stack([rng.uniform(-0.5, 255.5, 400), rng.uniform(-0.5, 319.5, 400)], axis=1)
    lab = (rng.random(400) < 0.75).astype(int)
    res, growth = _peak_rss_during(lambda: moving_model.segment(image, clicks, lab))
    assert res.mask.shape == (256, 320)
    assert _inside(res.points[lab == 1], (256, 320))
    np.testing.assert_array_equal(res.points[lab == 0], clicks[lab == 0])  # negatives never move
    assert np.abs(res.points[lab == 1] - clicks[lab == 1]).max() > 1
    assert growth < 1 << 30, f"400 clicks grew memory by {growth / 2**20:.0f} MiB"


def test_click_while_the_slice_is_being_encoded_waits_and_encodes_once(model, frame0):
    """Thread A is encoding a slice; clicks on it from other threads wait for that encode."""
    image0, labels0, base = frame0
    image = image0[::-1].copy()  # new content: not in the cache
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_encode(picture: np.ndarray) -> ImageEmbedding:
        calls.append(1)
        started.set()
        release.wait(10)
        return ImageEmbedding(base.image_embed, base.high_res_feats, picture.shape[:2])

    original = model.backbone.encode
    model.backbone.encode = slow_encode
    results: dict[str, object] = {}
    try:
        encoder = threading.Thread(target=lambda: results.__setitem__("emb", model.embed(image)))
        encoder.start()
        assert started.wait(10)
        clickers = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, model.segment(image, [[40 + i, 60]])))
            for i in range(3)
        ]
        for t in clickers:
            t.start()
        time.sleep(0.3)
        assert not any(i in results for i in range(3)), "a click went ahead without the embedding"
        release.set()
        for t in [encoder, *clickers]:
            t.join(20)
    finally:
        release.set()
        model.backbone.encode = original
    assert calls == [1], "the slice was encoded more than once"
    assert results["emb"].image_embed is base.image_embed
    for i in range(3):  # same mask as a click on the already-encoded slice
        expected = model.segment(image0, [[40 + i, 60]])
        np.testing.assert_array_equal(results[i].mask, expected.mask)
