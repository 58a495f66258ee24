"""The prompt generator: it learns two classes, its checkpoints round-trip, its boxes fit its regions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_rpsam2 import jobs
from napari_rpsam2.autoseg import (
    GeneratorConfig,
    GeneratorData,
    GeneratorTrainConfig,
    PromptGenerator,
    SlicePrediction,
    class_ids_from_instances,
    components,
    load_generator,
    read_generator_header,
    save_generator,
    train_generator,
)
from napari_rpsam2.autoseg.generator import slice_input
from napari_rpsam2.autoseg.training import dice_per_class
from napari_rpsam2.model import CheckpointError
from shapes_data import discs_and_squares

TINY = dict(input_size=64, features=(8, 8, 16, 32, 64, 8))


@pytest.fixture(scope="module")
def trained():
    """A generator trained on 32 generated slices (CPU-sized: 25 short epochs of a tiny U-Net)."""
    images, classes = discs_and_squares(32, seed=0)
    data = GeneratorData([images], [classes], ["disc", "square"], rgb=False)
    logs = []
    result = train_generator(data, GeneratorConfig(**TINY), GeneratorTrainConfig(epochs=25, batch_size=4, lr=5e-3),
                             on_epoch=logs.append)
    return result, logs


def test_the_generator_learns_discs_and_squares_on_held_out_images(trained):
    result, logs = trained
    images, truth = discs_and_squares(8, seed=99)  # never seen in training nor validation
    pred = np.stack([result.generator.predict(images, z).class_map() for z in range(len(images))])
    per_class = dice_per_class(pred, truth, 2)
    assert np.mean(per_class) > 0.9, per_class
    assert min(per_class) > 0.85, per_class
    assert logs[-1].loss < logs[0].loss / 2
    assert result.n_val > 0 and result.best_val_dice == max(log.val_dice for log in logs)


def test_a_checkpoint_predicts_what_the_trained_generator_predicted(trained, tmp_path):
    result, _ = trained
    path = save_generator(tmp_path / "gen.safetensors", result.generator, training={"epochs": 25})
    header = read_generator_header(path)
    assert header["classes"] == ["disc", "square"]
    assert header["architecture"]["name"].endswith("BasicUNet")
    assert header["input"]["normalisation"] == "percentiles" and "monai" in header["versions"]
    loaded = load_generator(path)
    images, _ = discs_and_squares(2, seed=5)
    a, b = result.generator.predict(images, 1), loaded.predict(images, 1)
    np.testing.assert_array_equal(a.logits, b.logits)


def test_damaged_or_foreign_files_are_refused_with_their_name(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_generator(bad)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not a prompt generator"):
        load_generator(other)


def test_a_grey_generator_refuses_rgb_images():
    gen = PromptGenerator.create(GeneratorConfig(**TINY))
    with pytest.raises(ValueError, match="grey"):
        gen.predict(np.zeros((32, 32, 3), np.uint8), 0)


def test_components_give_one_box_per_region_of_each_class():
    logits = np.full((3, 40, 50), -5.0, np.float32)
    logits[0] = 0.0
    logits[1, 5:10, 5:15] = 5.0      # a disc-class region
    logits[1, 30:36, 40:45] = 5.0    # a second one, apart
    logits[2, 20:25, 20:30] = 5.0    # a square-class region
    logits[2, 0:2, 48:50] = 5.0      # speckle below min_area
    probs = torch.softmax(torch.from_numpy(logits), 0).numpy()
    comps = components(SlicePrediction(logits, probs, ["disc", "square"]), min_area=8)
    assert [(c.class_index, tuple(c.box)) for c in comps] == [
        (1, (5, 5, 9, 14)), (1, (30, 40, 35, 44)), (2, (20, 20, 24, 29))]
    assert comps[0].area == 50 and comps[0].score > 0.9


def test_volumes_see_their_neighbouring_slices_as_channels():
    norm = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1) * np.ones((4, 2, 3, 1), np.float32)
    x = slice_input(norm, 0, context=1)  # below the first slice, the first slice repeats
    assert x.shape == (3, 2, 3) and [float(c[0, 0]) for c in x] == [0.0, 0.0, 1.0]
    assert [float(c[0, 0]) for c in slice_input(norm, 2, context=1)] == [1.0, 2.0, 3.0]


def test_instance_labels_become_classes_through_a_table():
    labels = np.array([[0, 3, 3], [7, 7, 0]])
    ids = class_ids_from_instances(labels, {3: "square", 7: "disc"}, ["disc", "square"])
    assert ids.tolist() == [[0, 2, 2], [1, 1, 0]]
    with pytest.raises(ValueError, match=r"\[7\]"):
        class_ids_from_instances(labels, {3: "square"}, ["disc", "square"])


def test_training_stops_on_cancel_and_reports_progress():
    images, classes = discs_and_squares(4, size=32, seed=1)
    data = GeneratorData([images], [classes], ["disc", "square"], rgb=False)
    seen = []

    def progress(stage, done, total):
        seen.append((stage, done, total))

    with pytest.raises(jobs.Cancelled):
        train_generator(data, GeneratorConfig(input_size=32, features=(4, 4, 8, 8, 16, 4)),
                        GeneratorTrainConfig(epochs=5), progress=progress,
                        cancel=lambda: any(s == "epoch" for s, _, _ in seen))
    assert ("epoch", 1, 5) in seen and ("epoch", 2, 5) not in seen


def test_class_ids_beyond_the_named_classes_are_refused():
    with pytest.raises(ValueError, match="class id 3"):
        GeneratorData([np.zeros((1, 8, 8))], [np.full((1, 8, 8), 3)], ["a", "b"], rgb=False)


def test_a_volume_generator_reads_its_neighbours_and_predicts_every_slice():
    images, classes = discs_and_squares(5, size=32, seed=2)
    data = GeneratorData([images], [classes], ["disc", "square"], rgb=False)
    config = GeneratorConfig(context=1, input_size=32, features=(4, 4, 8, 8, 16, 4))
    result = train_generator(data, config, GeneratorTrainConfig(epochs=1, val_fraction=0))
    assert result.generator.config.in_channels == 3 and result.n_val == 0
    first = next(result.generator.network.parameters())
    assert first.shape[1] == 3  # the first convolution sees three slices
    pred = result.generator.predict(images, 4)
    assert pred.logits.shape == (3, 32, 32) and np.allclose(pred.probabilities.sum(0), 1, atol=1e-5)
