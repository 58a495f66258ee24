"""The application layer's use cases without Qt: training data and split, training, heatmaps, evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_rpsam2 import RPSAM2
from napari_rpsam2.app import Workspace
from napari_rpsam2.app.evaluate import evaluate
from napari_rpsam2.app.heatmap import object_mask, sensitivity_maps
from napari_rpsam2.app.train import data_from_arrays, label_array, train_from_arrays
from napari_rpsam2.jobs import CancelFlag, Cancelled
from napari_rpsam2.training import TrainConfig
from napari_rpsam2.training.data import DataError


def test_rgb_label_png_with_equal_channels_is_one_label_plane(instrument_stack):
    _, labels = instrument_stack
    rgb = np.repeat(labels[0][..., None], 3, axis=-1).astype(np.uint8)
    np.testing.assert_array_equal(label_array(rgb, labels[0].shape), labels[0])
    rgba = np.concatenate([rgb, np.full_like(rgb[..., :1], 255)], axis=-1)
    np.testing.assert_array_equal(label_array(rgba, labels[0].shape), labels[0])
    rgb[0, 0, 1] += 1
    with pytest.raises(DataError, match="three equal channels"):
        label_array(rgb, labels[0].shape)
    with pytest.raises(DataError, match="pick the labels made for this image"):
        label_array(labels[0][:10], labels[0].shape)


def test_split_uses_annotated_slices_only(instrument_stack):
    image, labels = instrument_stack
    labels = labels.copy()
    labels[1] = 0  # an unannotated slice is neither trained on nor validated on
    data = data_from_arrays(image, labels, rgb=True)
    assert len(data.train) + len(data.val) == 2
    assert "slice 1" not in data.train.names + data.val.names
    assert "held out" in data.validation
    one = data_from_arrays(image[:1], labels[:1], rgb=True)
    assert one.val is None and "one annotated slice" in one.validation


def test_training_reuses_embeddings_and_reports_candidate_chunks(model, instrument_stack, tmp_path, monkeypatch):
    image, labels = instrument_stack
    image, labels = image[:2, :128, :160], labels[:2, :128, :160]
    ws = Workspace()
    ws.set_model(RPSAM2(model.backbone))
    keys = [("layer", i) for i in range(2)]
    for i in range(2):  # what the click dock left in the workspace's cache (the layer's gamma at 0.7)
        ws.model.embed(image[i], contrast_limits=[0, 255], gamma=0.7, rgb=True, key=keys[i])
    calls = []
    real_encode = model.backbone.encode
    monkeypatch.setattr(model.backbone, "encode", lambda *a, **k: calls.append(1) or real_encode(*a, **k))
    seen = []
    config = TrainConfig(epochs=1, grid_stride=8, clicks_per_object=1, eval_clicks=1)
    done = train_from_arrays(ws.model, image, labels, tmp_path / "b.safetensors", config, rgb=True,
                             contrast_limits=[0, 255], gamma=0.7, slice_keys=lambda i: keys[i],
                             candidates=ws.candidates,
                             progress=lambda *a: seen.append(a))
    assert calls == [], "slices the workspace had were encoded again (or with another gamma)"
    assert done.data.train.gamma == 0.7 and done.data.val.gamma == 0.7
    cand = [(d, t) for s, d, t in seen if s == "candidates"]
    objects = len(done.data.train.objects())
    assert len(cand) > objects + 1, "candidate progress is only per object"
    assert cand[-1][0] == cand[-1][1] and cand[-1][1] > objects
    assert [d for d, _ in cand] == sorted(d for d, _ in cand)
    assert done.result.checkpoint.exists() and len(done.result.history) == 1
    assert len(ws.candidates) == objects  # the workspace keeps the grid Dice for the next run
    assert done.model.shift_block is not ws.model.shift_block  # the workspace's model is left alone


def test_cancel_during_candidates_writes_nothing(model, instrument_stack, tmp_path):
    image, labels = instrument_stack
    flag = CancelFlag()

    def progress(stage, done, total):
        if stage == "candidates":
            flag.set()

    done = train_from_arrays(model, image[:1], labels[:1], tmp_path / "c.safetensors",
                             TrainConfig(epochs=1, grid_stride=4), rgb=True, progress=progress, cancel=flag)
    assert done.result.cancelled and done.result.checkpoint is None
    assert not (tmp_path / "c.safetensors").exists()


def test_heatmap_maps_both_methods_only_for_a_trained_block(model, moving_model, frame0):
    image, labels, _ = frame0
    mask = object_mask(labels, int(labels.max()))
    stages = []
    maps = sensitivity_maps(model, image, mask, stride=24, rgb=True, progress=lambda s, d, t: stages.append(s))
    assert [m.method for m in maps] == ["sam2"] and set(stages) == {"sam2"}
    maps = sensitivity_maps(moving_model, image, mask, stride=24, rgb=True, progress=lambda s, d, t: stages.append(s))
    assert [m.method for m in maps] == ["sam2", "rpsam2"] and "rpsam2" in stages
    flag = CancelFlag()
    flag.set()
    with pytest.raises(Cancelled):
        sensitivity_maps(model, image, mask, stride=24, rgb=True, cancel=flag)
    with pytest.raises(ValueError, match="ids there"):
        object_mask(labels, 99)


def test_evaluate_reports_slices_and_refuses_zero_seeds(model, instrument_stack):
    from napari_rpsam2.training.data import stack_from_arrays

    image, labels = instrument_stack
    stack = stack_from_arrays(image[:1], labels[:1], rgb=True)
    seen = []
    report = evaluate(model, stack, clicks=1, methods=("sam2",), progress=lambda *a: seen.append(a))
    assert seen[-1] == ("slices", 1, 1) and 0 <= report["sam2"]["mDSC"]["mean"] <= 100
    with pytest.raises(ValueError, match="at least 1"):
        evaluate(model, stack, clicks=0)
