"""``rpsam2 rerun`` and ``rpsam2 export`` on a work folder made by the click session's commits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_rpsam2 import cli
from napari_rpsam2.app import workfolder as wf
from napari_rpsam2.app.click_session import ClickSession


def run(capsys, args, model=None):
    code = cli.main(args, model=model)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rpsam2: error: "), err
    for w in words:
        assert w in lines[0]


@pytest.fixture(scope="module")
def made(model, moving_model, instrument_stack, tmp_path_factory):
    """A 2-frame TIFF, two objects committed on frame 1 with the moving shift block, its checkpoint."""
    tmp = tmp_path_factory.mktemp("wf")
    image = instrument_stack[0][:2]
    tifffile.imwrite(tmp / "clip.tif", image)
    labels = np.zeros(image.shape[:-1], np.int32)
    folder = wf.open_for_image(image, labels.shape, image_path=tmp / "clip.tif")
    session = ClickSession(labels.shape)
    session.target = labels
    for row, col in ((60, 80), (200, 250)):
        session.add_click((1,), row, col)
        preview = session.segment(moving_model, image[1], (1,))
        record = session.commit()
        wf.record_commit(folder, record.label_id, record.change, preview.result, labels, model=moving_model,
                         refine=True)
    moving_model.save_shift_block(tmp / "block.safetensors")
    return tmp, folder, labels


def test_rerun_reproduces_every_object_with_the_same_shift_block(capsys, model, made):
    tmp, folder, _ = made
    code, out, err = run(capsys, ["rerun", str(folder.path), "--sam2-weights", "random", "--quiet",
                                  "--shift-block", str(tmp / "block.safetensors")], model=model)
    assert code == 0, out + err
    assert out.count(": reproduced") == 2 and "2 of 2 objects reproduced" in out


def test_rerun_exits_1_when_a_mask_is_not_reproduced(capsys, model, made, tmp_path):
    import shutil

    tmp, folder, _ = made
    copy = tmp_path / "copy.rpsam2"
    shutil.copytree(folder.path, copy)
    journal = copy / "objects.jsonl"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    events[1]["prompts"][0]["clicks"] = [[10.0, 300.0]]  # the saved prompt no longer makes the saved mask
    journal.write_text("".join(json.dumps(e) + "\n" for e in events))
    code, out, _ = run(capsys, ["rerun", str(copy), "--sam2-weights", "random", "--quiet",
                                "--shift-block", str(tmp / "block.safetensors")], model=model)
    assert code == 1
    assert "object 1 (commit #1, slice [1]): reproduced" in out and "object 2 (commit #2, slice [1]): NOT" in out


def test_export_writes_labels_prompts_and_coco_that_their_readers_read(capsys, made, tmp_path):
    from pycocotools.coco import COCO

    from napari_rpsam2.cli.propagate import read_prompts

    _, folder, labels = made
    out = {k: tmp_path / f"out.{k}" for k in ("tif", "csv", "json")}
    code, stdout, err = run(capsys, ["export", str(folder.path), "--labels", str(out["tif"]), "--prompts",
                                     str(out["csv"]), "--coco", str(out["json"])])
    assert code == 0, err
    np.testing.assert_array_equal(tifffile.imread(out["tif"]), labels)
    prompts = read_prompts(out["csv"])
    assert [(p.slice, p.object) for p in prompts] == [(1, 1), (1, 2)]
    np.testing.assert_allclose(prompts[1].points, [[200, 250]])
    coco = COCO(str(out["json"]))
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == ["clip_0000.png", "clip_0001.png"]
    for ann in coco.anns.values():
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), labels[1] == ann["object_id"])
    assert len(coco.anns) == 2


@pytest.mark.parametrize("case", ["nothing", "suffix", "not a folder", "other image"])
def test_bad_input_gives_one_line_and_exit_2(capsys, model, made, tmp_path, case):
    tmp, folder, _ = made
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, np.zeros((2, 256, 320, 3), np.uint8))
    args, words = {
        "nothing": (["export", str(folder.path)], ("nothing to export",)),
        "suffix": (["export", str(folder.path), "--coco", str(tmp_path / "x.txt")], ("should end in .json",)),
        "not a folder": (["export", str(tmp_path), "--labels", str(tmp_path / "l.tif")], ("not a work folder",)),
        "other image": (["rerun", str(folder.path), "--images", str(other), "--sam2-weights", "random"],
                        ("another image",)),
    }[case]
    code, _, err = run(capsys, args, model=model)
    assert_one_line_error(code, err, *words)


def test_rerun_reproduces_a_saved_one_shot_run_and_exits_0(capsys, model, instrument_stack, tmp_path):
    from napari_rpsam2.app.oneshot import propagate_from_slice

    image, truth = instrument_stack
    tifffile.imwrite(tmp_path / "stack.tif", image, photometric="rgb")
    labels = np.zeros(truth.shape, np.int32)
    folder = wf.open_for_image(image, labels.shape, image_path=tmp_path / "stack.tif")
    options = {"guided_attention": True, "semantic_prompt": False}
    outcome = propagate_from_slice(model, image, 1, truth[1], labels, method="persam", method_options=options,
                                   targets=[0, 2])
    wf.record_oneshot(folder, outcome, 1, truth[1], labels, model=model, refine=False,
                      options={"method_options": options, "targets": [0, 2]})
    code, out, err = run(capsys, ["rerun", str(folder.path), "--sam2-weights", "random", "--quiet"], model=model)
    assert code == 0, out + err
    assert "object 1 (oneshot #1): reproduced (2 slices)" in out and "2 of 2 objects reproduced" in out


def test_export_writes_a_video_as_pngs_named_after_its_frames_and_a_volume_as_nifti_with_its_affine(capsys,
                                                                                                      tmp_path):
    import nibabel as nib
    from io_samples import AFFINE, make_nifti, make_video

    from napari_rpsam2.io import open_images, read_label_plane

    for path in (make_video(tmp_path / "clip.mp4", n=6), make_nifti(tmp_path / "ct.nii.gz")):
        source = open_images(path)
        labels = np.zeros(source.shape[:3], np.int32)
        labels[2, 3:9, 4:12], labels[4, 1:5, 2:6] = 3, 5
        folder = wf.open_for_image(source.data, labels.shape, image_path=path)
        folder.record("commit", {"objects": [3, 5], "prompts": []}, labels=labels, slices=[(2,), (4,)])
        out = tmp_path / ("frames" if path.suffix == ".mp4" else "labels.nii.gz")
        code, stdout, err = run(capsys, ["export", str(folder.path), "--labels", str(out)])
        assert code == 0, err
        if path.suffix == ".mp4":
            assert sorted(p.stem for p in out.glob("*.png")) == sorted(source.names)
            for i, name in enumerate(source.names):
                np.testing.assert_array_equal(read_label_plane(out / f"{name}.png"), labels[i])
        else:
            back = nib.load(out)
            np.testing.assert_allclose(back.affine, AFFINE)
            np.testing.assert_array_equal(np.transpose(np.asarray(back.dataobj), (2, 1, 0)), labels)


def _adapters(model, seed: int):
    """Adapters with non-zero weights everywhere (so they change SAM2's masks)."""
    import torch

    from napari_rpsam2.model.adapters import SAM2Adapters

    adapters = SAM2Adapters(model.backbone.model)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for p in adapters.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return adapters


def test_rerun_loads_the_adapters_the_events_were_made_with_and_refuses_other_ones(capsys, model,
                                                                                   instrument_stack, tmp_path):
    from napari_rpsam2 import RPSAM2
    from napari_rpsam2.cli.support import _own_backbone
    from napari_rpsam2.model.adapters import save_adapters

    image = instrument_stack[0][:2]
    tifffile.imwrite(tmp_path / "clip.tif", image)
    good = save_adapters(tmp_path / "good.safetensors", _adapters(model, 5), model.backbone.name)
    other = save_adapters(tmp_path / "other.safetensors", _adapters(model, 6), model.backbone.name)
    tuned = RPSAM2(_own_backbone(model.backbone), cache=model.cache)
    tuned.backbone.load_adapters(good)
    labels = np.zeros(image.shape[:-1], np.int32)
    folder = wf.open_for_image(image, labels.shape, image_path=tmp_path / "clip.tif")
    session = ClickSession(labels.shape)
    session.target = labels
    for made_with, (row, col) in ((tuned, (60, 80)), (model, (200, 250))):  # with the adapters, then without
        session.add_click((1,), row, col)
        preview = session.segment(made_with, image[1], (1,))
        record = session.commit()
        wf.record_commit(folder, record.label_id, record.change, preview.result, labels, model=made_with,
                         refine=False)
    assert list(wf.recorded_adapters(folder).values()) == [[1]]
    base = ["rerun", str(folder.path), "--sam2-weights", "random", "--quiet"]

    code, _, err = run(capsys, base, model=model)  # not given: refused before anything runs
    assert_one_line_error(code, err, "#1", "--adapters")
    code, _, err = run(capsys, [*base, "--adapters", str(other)], model=model)  # other adapters: refused
    assert_one_line_error(code, err, "digest")
    code, out, err = run(capsys, [*base, "--adapters", str(good)], model=model)
    assert code == 0, out + err
    assert "2 of 2 objects reproduced" in out  # object 1 with the adapters, object 2 on plain SAM2
    assert model.backbone.adapters is None  # the lent backbone was not touched
