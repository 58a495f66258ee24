"""The dock's use cases without Qt: train on arrays, propose boxes, refine reviewed boxes, write and undo."""

from __future__ import annotations

import numpy as np
import pytest

from napari_rpsam2 import jobs
from napari_rpsam2.app.autoseg_review import (
    BoxProposal,
    RefinedBox,
    generator_data_from_arrays,
    propose_boxes,
    refine_boxes,
    slice_choice,
    train_generator_on_arrays,
    write_objects,
)
from napari_rpsam2.autoseg import GeneratorConfig, GeneratorTrainConfig
from napari_rpsam2.autoseg.refine import RefineOptions
from napari_rpsam2.training.data import DataError
from shapes_data import discs_and_squares

TINY = dict(input_size=64, features=(8, 8, 16, 32, 64, 8))


@pytest.fixture(scope="module")
def trained():
    images, classes = discs_and_squares(24, seed=3)
    result = train_generator_on_arrays(images, classes, rgb=False, class_names={1: "disc", 2: "square"},
                                       config=GeneratorConfig(**TINY),
                                       train_config=GeneratorTrainConfig(epochs=20, batch_size=4, lr=5e-3))
    return result.generator


def test_arrays_become_generator_data_with_the_class_table_and_only_annotated_slices():
    images, classes = discs_and_squares(5, seed=1)
    labels = classes.copy()
    labels[2] = 0  # an unannotated slice: neither trained on nor taken as background
    labels[labels == 2] = 7  # instance-like ids, named by the table
    data = generator_data_from_arrays(images, labels, rgb=False, class_names={1: "disc", 7: "square"})
    assert data.classes == ["disc", "square"]
    assert [s.shape[0] for s in data.stacks] == [2, 2]
    assert set(np.unique(np.concatenate([m.ravel() for m in data.class_maps]))) == {0, 1, 2}
    with pytest.raises(DataError, match=r"label ids \[7\] are not in the class map"):
        generator_data_from_arrays(images, labels, rgb=False, class_names={1: "disc"})
    with pytest.raises(DataError, match="pick the labels made for this image"):
        generator_data_from_arrays(images, labels[:, :10], rgb=False)
    without = generator_data_from_arrays(images, labels, rgb=False)
    assert without.classes == ["1", "7"]


def test_slice_choice():
    assert slice_choice("current", 4, 0, 0, 9) == [4]
    assert slice_choice("all", 4, 0, 0, 3) == [0, 1, 2]
    assert slice_choice("range", 0, 2, 4, 9) == [2, 3, 4]
    with pytest.raises(ValueError, match="not a range inside the stack"):
        slice_choice("range", 0, 5, 2, 9)


def test_proposals_are_one_box_per_region_of_each_class(trained):
    from scipy import ndimage

    from napari_rpsam2.autoseg.generator import normalise_stack

    images, _ = discs_and_squares(2, seed=50)
    boxes = propose_boxes(trained, images, [1], rgb=False, min_area=1)
    assert boxes and all(b.slice_index == 1 for b in boxes)
    cmap = trained.predict_normalised(normalise_stack(images, False), 1).class_map()
    for k, name in ((1, "disc"), (2, "square")):
        regions, n = ndimage.label(cmap == k)
        mine = [b for b in boxes if b.class_index == k]
        assert len(mine) == n and all(b.class_name == name for b in mine)
        extents = sorted((sl[0].start, sl[1].start, sl[0].stop - 1, sl[1].stop - 1)
                         for sl in ndimage.find_objects(regions))
        assert sorted(tuple(int(v) for v in b.box) for b in mine) == extents  # each box: one region's extent
    flag = jobs.CancelFlag()
    flag.set()
    with pytest.raises(jobs.Cancelled):
        propose_boxes(trained, images, [0, 1], cancel=flag)


def test_refine_reviewed_boxes_is_the_automatic_path_from_the_same_box(model, trained):
    from napari_rpsam2.autoseg.components import components
    from napari_rpsam2.autoseg.generator import normalise_stack
    from napari_rpsam2.autoseg.refine import refine_component

    images, _ = discs_and_squares(1, seed=51)
    boxes = propose_boxes(trained, images, [0])
    options = RefineOptions(stages=2)
    got = refine_boxes(model, trained, images, boxes[:1], options=options)
    prediction = trained.predict_normalised(normalise_stack(images, False), 0)
    comp = components(prediction)[0]
    want = refine_component(model, model.embed(images[0]), comp, prediction, options).mask
    assert len(got) == 1
    g = np.zeros_like(want)
    o = got[0]
    g[o.top:o.top + o.mask.shape[0], o.left:o.left + o.mask.shape[1]] = o.mask
    np.testing.assert_array_equal(g, want)
    with pytest.raises(ValueError, match="does not know|knows only"):
        refine_boxes(model, trained, images, [BoxProposal(0, 5, "x", np.array([1, 1, 5, 5.0]))])


def test_objects_go_only_where_the_target_is_empty_and_undo_restores_both_layers():
    labels = np.zeros((2, 8, 8), np.int32)
    labels[1, :4, :4] = 3  # a person's object
    classes = np.zeros_like(labels)
    objects = [RefinedBox(1, 2, 2, 2, np.ones((4, 4), bool), 0.9),
               RefinedBox(0, 1, 0, 0, np.ones((2, 2), bool), 0.8),
               RefinedBox(1, 1, 0, 0, np.ones((2, 2), bool), 0.7)]  # covered by the person's object
    before = labels.copy()
    change, class_change, written = write_objects(labels, classes, objects)
    assert written == 2
    assert (labels[1, :4, :4] == 3).all() and (labels[1, 4:6, 2:6] == 5).all() and (labels[1, 2:4, 4:6] == 5).all()
    assert (labels[0, :2, :2] == 4).all()
    assert (classes[1, 4:6, 4:6] == 2).all() and (classes[1, :4, :4] == 0).all() and (classes[0, :2, :2] == 1).all()
    assert change.size == 12 + 4  # the 16-pixel object less the person's 4 pixels, and 4 on slice 0
    change.undo(labels)
    class_change.undo(classes)
    np.testing.assert_array_equal(labels, before)
    assert not classes.any()


def test_finetuning_on_arrays_leaves_the_model_as_it_was_and_writes_only_a_finished_run(model, tmp_path):
    from napari_rpsam2.app.finetune import finetune_from_arrays
    from napari_rpsam2.model.adapters import load_adapters
    from napari_rpsam2.training.adapters import FinetuneConfig

    images, classes = discs_and_squares(2, size=64, seed=4)
    signature = model.backbone.weights_signature
    flag = jobs.CancelFlag()
    epochs = []

    def stop_after_first(log):
        epochs.append(log)
        flag.set()

    with pytest.raises(jobs.Cancelled):
        finetune_from_arrays(model, images, classes, tmp_path / "a.safetensors", rgb=False,
                             config=FinetuneConfig(epochs=5), on_epoch=stop_after_first, cancel=flag)
    assert len(epochs) == 1 and not (tmp_path / "a.safetensors").exists()
    out = finetune_from_arrays(model, images, classes, tmp_path / "b.safetensors", rgb=False,
                               config=FinetuneConfig(epochs=2, lr=1e-2))
    assert model.backbone.adapters is None and model.backbone.weights_signature == signature
    adapters, header = load_adapters(out.path, model.backbone.model, model.backbone.name)
    assert len(out.history) == 2 and header["training"]["epochs"] == 2
    zero_at_start = [p for n, p in adapters.named_parameters() if n.endswith(("point_out.weight", "up.weight"))]
    assert zero_at_start and any(float(p.abs().sum()) > 0 for p in zero_at_start)  # trained: no longer SAM2 as is


def test_one_slice_is_predicted_as_in_the_whole_stack_without_normalising_the_stack():
    from napari_rpsam2.app.autoseg_review import _SlicePredictor
    from napari_rpsam2.autoseg import PromptGenerator
    from napari_rpsam2.autoseg.generator import normalise_stack

    images, _ = discs_and_squares(5, seed=8)
    images[4] *= 3  # the stack's range is set by another slice
    generator = PromptGenerator.create(GeneratorConfig(classes=["a"], context=1, **TINY), seed=1)
    whole = normalise_stack(images, False)
    for z in (0, 2, 4):  # the edges repeat, as in the whole stack
        np.testing.assert_array_equal(_SlicePredictor(generator, images, False)(z).logits,
                                      generator.predict_normalised(whole, z).logits)


def test_generator_only_takes_the_generator_region_inside_each_reviewed_box(trained):
    from napari_rpsam2.autoseg.generator import normalise_stack

    images, _ = discs_and_squares(1, seed=52)
    cmap = trained.predict_normalised(normalise_stack(images, False), 0).class_map()
    box = BoxProposal(0, 2, "square", np.array([0.0, 0.0, 40.0, 30.0]))
    (got,) = refine_boxes(None, trained, images, [box], options=RefineOptions(stages=0))
    want = np.zeros_like(cmap, bool)
    want[:41, :31] = cmap[:41, :31] == 2
    full = np.zeros_like(want)
    full[got.top:got.top + got.mask.shape[0], got.left:got.left + got.mask.shape[1]] = got.mask
    np.testing.assert_array_equal(full, want)
    with pytest.raises(ValueError, match="needs a model"):
        refine_boxes(None, trained, images, [box], options=RefineOptions(stages=1))


def test_a_single_image_is_one_slice_from_proposal_to_writing(trained):
    images, _ = discs_and_squares(1, seed=53)
    image = images[0]  # (H, W): a 2D image, as a 2D layer holds it
    boxes = propose_boxes(trained, image, [0], rgb=False)
    assert boxes and {b.slice_index for b in boxes} == {0}
    objects = refine_boxes(None, trained, image, boxes, options=RefineOptions(stages=0), rgb=False)
    labels, classes = np.zeros(image.shape, np.int32), np.zeros(image.shape, np.int32)
    change, _, written = write_objects(labels, classes, objects)
    assert written == len(objects) > 0 and labels.max() == written
    assert set(np.unique(classes[labels > 0])) <= {1, 2}
    change.undo(labels)
    assert not labels.any()
