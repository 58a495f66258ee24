"""Work folder use cases with the real (random-weight) model: record commits, restore, re-run to the same mask."""

from __future__ import annotations

import numpy as np
import pytest

from napari_rpsam2.app import workfolder as wf
from napari_rpsam2.app.click_session import ClickSession


def _commit_two(session, model, image, labels, folder):
    """Click and commit two objects on slice 0, recording each commit with its prompts."""
    events = []
    for clicks, box in (([(60, 80, True)], None), ([(200, 250, True), (30, 30, False)], (150, 200, 250, 310))):
        for row, col, positive in clicks:
            session.add_click((0,), row, col, positive)
        if box is not None:
            session.set_box((0,), box)
        preview = session.segment(model, image[0], (0,))
        record = session.commit()
        assert record is not None
        events.append(wf.record_commit(folder, record.label_id, record.change, preview.result, labels,
                                       model=model, refine=preview.refine, box=box))
    return events


def test_commits_are_restored_and_rerun_reproduces_each_mask(model, moving_model, instrument_stack, tmp_path):
    image = instrument_stack[0][:1]
    labels = np.zeros(image.shape[:-1], np.int32)
    source = tmp_path / "frames.tif"
    source.write_bytes(b"")
    folder = wf.open_for_image(image, labels.shape, image_path=source)
    assert folder.path == tmp_path / "frames.rpsam2"
    session = ClickSession(labels.shape)
    session.target = labels
    events = _commit_two(session, moving_model, image, labels, folder)

    back = wf.restore(wf.open_for_image(image, labels.shape, image_path=source, create=False))
    np.testing.assert_array_equal(back.labels, labels)
    assert sorted(back.objects) == [1, 2]
    second = back.objects[2][0]
    assert second["prompts"][0]["labels"] == [1, 0] and second["prompts"][0]["box"] == [150, 200, 250, 310]
    assert second["prompts"][0]["refined"][0] != second["prompts"][0]["clicks"][0]  # the shift block moved it
    assert second["model"]["method"] == "rpsam2" and second["model"]["backbone"] == "sam2.1_hiera_tiny"
    assert "random" in second["model"]["sam2_weights"] and len(second["model"]["shift_block"]) == 24

    outcomes = wf.rerun(folder, moving_model, image)
    assert [(o.object_id, o.reproduced) for o in outcomes] == [(1, True), (2, True)]
    assert outcomes[0].new_pixels == events[0]["mask"]["pixels"] > 0

    other = wf.rerun(folder, model, image)  # another shift block: moved clicks differ, masks may too
    assert all(o.reproduced or "shift block" in o.note for o in other)


def test_an_undone_commit_is_left_out_and_rerun_refuses_another_image(model, instrument_stack, tmp_path):
    image = instrument_stack[0][:1]
    labels = np.zeros(image.shape[:-1], np.int32)
    folder = wf.open_for_image(image, labels.shape, folder=tmp_path / "work")
    session = ClickSession(labels.shape)
    session.target = labels
    _commit_two(session, model, image, labels, folder)
    record = session.undo()
    assert wf.undo_object(folder, "commit", record.label_id, labels, record.change.slice_indices) is not None
    back = wf.restore(folder)
    assert sorted(back.objects) == [1]
    np.testing.assert_array_equal(back.labels, labels)
    assert not (np.asarray(back.labels) == 2).any()
    with pytest.raises(wf.WorkFolderError, match="another image"):
        wf.rerun(folder, model, image[:, ::-1].copy())


def test_a_propagation_is_recorded_with_its_prompts_and_rerun_gives_the_same_masks(model, instrument_stack,
                                                                                    tmp_path):
    from napari_rpsam2.app.propagation import propagate_into_labels
    from napari_rpsam2.model import FramePrompt

    image, truth = instrument_stack[0][:2], instrument_stack[1][:2]
    labels = np.zeros(truth.shape, np.int32)
    folder = wf.open_for_image(image, labels.shape, folder=tmp_path / "clip.rpsam2")
    prompts = [FramePrompt(0, 4, mask=truth[0] == 1), FramePrompt(0, 5, points=np.array([[60.0, 80.0]]),
                                                                  labels=np.array([1]))]
    options = {"direction": "forward", "stop": 2}
    result, undo = propagate_into_labels(model, image, prompts, labels, **options)
    event = wf.record_propagation(folder, prompts, result, undo.change, labels, model=model, refine=True,
                                  options=options)

    back = wf.restore(folder)
    np.testing.assert_array_equal(back.labels, labels)
    assert sorted(back.objects) == [4, 5] and back.objects[5][0]["prompts"][1]["clicks"] == [[60.0, 80.0]]
    mask = folder.load_array(event["arrays"]["mask0"]).astype(bool)
    np.testing.assert_array_equal(mask, truth[0] == 1)  # the mask prompt itself is kept
    outcomes = wf.rerun(folder, model, image)
    assert [(o.kind, o.object_id, o.reproduced) for o in outcomes] == [("propagation", 4, True),
                                                                       ("propagation", 5, True)]
    assert outcomes[0].new_pixels == 2  # the object is on both slices

    summary = wf.export(folder, prompts=tmp_path / "p.csv")
    assert summary["prompt_rows"] == 1 and summary["prompts_left_out"] == 1  # a mask has no CSV form


def test_a_one_shot_run_keeps_its_reference_mask_method_and_generated_clicks(model, tmp_path):
    from types import SimpleNamespace

    from napari_rpsam2.app.label_changes import LabelChange

    labels = np.zeros((3, 16, 20), np.int32)
    reference = np.zeros((16, 20), np.int32)
    reference[2:6, 3:9] = 3
    before = labels.copy()
    labels[2, 4:8, 3:9] = 3
    edit = LabelChange.of_planes([((2,), before[2], labels[2])])
    generated = SimpleNamespace(object_id=3, points=np.array([[5.0, 6.0]]), labels=np.array([1]),
                                mask=labels[2] == 3)
    outcome = SimpleNamespace(results={2: SimpleNamespace(objects=[generated])}, method="persam", edit=edit)
    folder = wf.open_for_image(np.zeros((3, 16, 20), np.uint8), labels.shape, folder=tmp_path / "vol.rpsam2")
    event = wf.record_oneshot(folder, outcome, 0, reference, labels, model=model, refine=False,
                              options={"negatives": 1})
    back = wf.restore(folder)
    np.testing.assert_array_equal(back.labels, labels)
    (saved,) = back.objects[3]
    assert saved["method"] == "persam" and saved["reference_slice"] == 0 and saved["model"]["method"] == "sam2"
    assert saved["generated"][0]["clicks"] == [[5.0, 6.0]] and saved["slices"] == [[2]]
    np.testing.assert_array_equal(folder.load_array(event["arrays"]["reference"]), reference)


def _warp_options() -> dict:
    from napari_rpsam2.oneshot import WarpConfig

    return {"config": WarpConfig(steps=2, retrain_epochs=1), "rounds": 0}  # saved as JSON, rebuilt for the re-run


@pytest.mark.parametrize("method, options", [("persam", {"guided_attention": True, "semantic_prompt": True}),
                                             ("p2sam", {"negative_rule": "medical", "negatives": (1, 2)}),
                                             ("medpersam", "warp")])
def test_a_one_shot_run_is_rerun_to_the_same_masks_and_a_changed_reference_is_caught(model, instrument_stack,
                                                                                      tmp_path, method, options):
    from napari_rpsam2.app.oneshot import propagate_from_slice

    image, truth = instrument_stack
    options = _warp_options() if options == "warp" else options
    labels = np.zeros(truth.shape, np.int32)
    folder = wf.open_for_image(image, labels.shape, folder=tmp_path / f"{method}.rpsam2")
    outcome = propagate_from_slice(model, image, 0, truth[0], labels, method=method, method_options=options)
    assert outcome.edit.size > 0
    wf.record_oneshot(folder, outcome, 0, truth[0], labels, model=model, refine=False,
                      options={"method_options": options, "object_ids": None})
    np.testing.assert_array_equal(wf.restore(folder).labels, labels)
    outcomes = wf.rerun(folder, model, image)
    assert sorted((o.kind, o.object_id, o.reproduced) for o in outcomes) == [("oneshot", 1, True),
                                                                             ("oneshot", 2, True)]
    assert all(o.new_pixels == o.saved_pixels > 0 for o in outcomes)

    reference = folder.load_array(folder.restore().events[0]["arrays"]["reference"])
    reference[reference == 1] = 0  # the saved reference no longer says where object 1 is
    import tifffile

    tifffile.imwrite(folder.path / folder.restore().events[0]["arrays"]["reference"], reference)
    again = {o.object_id: o for o in wf.rerun(folder, model, image)}
    assert not again[1].reproduced and again[1].note


def test_labels_export_as_nifti_keeps_the_volume_affine(tmp_path):
    nib = pytest.importorskip("nibabel")
    from napari_rpsam2.io import open_images

    volume = (np.arange(4 * 6 * 5).reshape(4, 6, 5) % 50).astype(np.int16)
    affine = np.array([[0.0, 0.0, -2.5, 10.0], [0.0, 0.8, 0.0, -4.0], [0.7, 0.0, 0.0, 3.0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(np.transpose(volume, (2, 1, 0)), affine), tmp_path / "ct.nii.gz")
    source = open_images(tmp_path / "ct.nii.gz")
    labels = np.zeros(source.shape[:3], np.int32)
    labels[1, 2:4, 1:3] = 7
    folder = wf.open_for_image(source.data, labels.shape, image_path=tmp_path / "ct.nii.gz")
    folder.record("commit", {"objects": [7], "prompts": []}, labels=labels, slices=[(1,)])
    assert wf.input_form_name(wf.open_source(folder)) == "labels.nii.gz"
    wf.export(folder, labels=tmp_path / "out.nii.gz", source=wf.open_source(folder))
    back = nib.load(tmp_path / "out.nii.gz")
    np.testing.assert_allclose(back.affine, source.affine)
    np.testing.assert_array_equal(np.transpose(np.asarray(back.dataobj), (2, 1, 0)), labels)
