"""The work folder: journal, labels, restore after undo and after kill -9, exports read back by their readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from napari_rpsam2.annotations import (WorkFolder, WorkFolderError, append_event, coco_json, image_signature,
                                       prompt_rows, read_events, write_coco, write_labels, write_prompts_csv)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _folder(tmp_path, shape=(4, 32, 40)) -> tuple[WorkFolder, np.ndarray]:
    image = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    return WorkFolder.create(tmp_path / "stack.rpsam2", image_path="stack.tif", shape=shape,
                             signature=image_signature(image)), image


def _commit(folder, labels, index, oid, clicks, box=None):
    prompt = {"slice": [index], "object": oid, "clicks": clicks, "labels": [1] * len(clicks), "box": box}
    return folder.record("commit", {"objects": [oid], "prompts": [prompt]}, labels=labels, slices=[(index,)])


def test_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    journal = tmp_path / "objects.jsonl"
    append_event(journal, {"seq": 1})
    with open(journal, "ab") as fh:
        fh.write(b'{"seq": 2, "kind": "comm')  # what a crash in the middle of a write leaves
    assert read_events(journal) == ([{"seq": 1}], 1)
    append_event(journal, {"seq": 3})
    assert read_events(journal) == ([{"seq": 1}, {"seq": 3}], 1)


def test_restore_gives_labels_and_prompts_and_an_undo_removes_its_write(tmp_path):
    folder, _ = _folder(tmp_path)
    labels = np.zeros(folder.shape, np.int32)
    labels[1, 5:10, 5:10] = 1
    first = _commit(folder, labels, 1, 1, [[7.0, 7.0]])
    labels[2, 20:30, 0:3] = 2
    second = _commit(folder, labels, 2, 2, [[25.0, 1.0], [5.0, 5.0]], box=[20, 0, 29, 2])
    labels[2] = 0  # the second commit undone
    folder.record("undo", {"undoes": second["seq"]}, labels=labels, slices=[(2,)])

    back = WorkFolder.open(folder.path).restore()
    np.testing.assert_array_equal(back.labels, labels)
    assert sorted(back.objects) == [1]
    assert back.objects[1][0]["prompts"][0]["clicks"] == [[7.0, 7.0]]
    assert back.objects[1][0]["seq"] == first["seq"]


def test_a_redo_in_the_viewer_an_undo_of_the_undo_puts_the_commit_back_and_a_second_undo_removes_it(tmp_path):
    folder, _ = _folder(tmp_path)
    labels = np.zeros(folder.shape, np.int32)
    labels[2, 20:30, 0:3] = 2
    commit = _commit(folder, labels, 2, 2, [[25.0, 1.0]])
    labels[2] = 0
    undo = folder.record("undo", {"undoes": commit["seq"]}, labels=labels, slices=[(2,)])
    assert WorkFolder.open(folder.path).restore().objects == {}
    labels[2, 20:30, 0:3] = 2  # Ctrl-Shift-Z
    folder.record("undo", {"undoes": undo["seq"]}, labels=labels, slices=[(2,)])
    back = WorkFolder.open(folder.path).restore()
    assert sorted(back.objects) == [2] and (back.labels == 2).sum() == 30
    labels[2] = 0  # Ctrl-Z again
    folder.record("undo", {"undoes": commit["seq"]}, labels=labels, slices=[(2,)])
    back = WorkFolder.open(folder.path).restore()
    assert back.objects == {} and not back.labels.any()


def test_a_folder_of_another_image_is_refused_with_one_line(tmp_path):
    folder, image = _folder(tmp_path)
    other = image.copy()
    other[0, 0, 0, 0] ^= 1
    with pytest.raises(WorkFolderError, match="another image"):
        WorkFolder.create(folder.path, image_path=None, shape=folder.shape, signature=image_signature(other))
    with pytest.raises(WorkFolderError, match="shape"):
        WorkFolder.create(folder.path, image_path=None, shape=(4, 32, 41), signature=image_signature(image))
    with pytest.raises(WorkFolderError, match="not a work folder"):
        WorkFolder.open(tmp_path)


_WRITER = """
import sys, numpy as np
from napari_rpsam2.annotations import WorkFolder
folder = WorkFolder.open(sys.argv[1])
labels = np.zeros(folder.shape, np.int32)
for k in range(1, 100000):
    index = k % folder.shape[0]
    labels[index] = 0
    labels[index, : 1 + k % 30, :5] = k
    folder.record("commit", {"objects": [k], "prompts": [{"slice": [index], "object": k, "clicks": [[1.0, 1.0]],
                  "labels": [1], "box": None}], "filler": "x" * 3000}, labels=labels, slices=[(index,)])
    print(k, flush=True)
"""


class _LazyStack:
    """A long stack read one slice at a time that fails if anyone converts it whole (e.g. a video)."""

    shape, dtype = (400, 240, 320, 3), np.dtype(np.uint8)

    def __init__(self) -> None:
        self.read: list[int] = []

    def __getitem__(self, i: int) -> np.ndarray:
        self.read.append(int(i))
        return np.full(self.shape[1:], i % 251, np.uint8)

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole stack was read")


def test_the_signature_of_a_long_lazy_stack_reads_a_few_slices_and_tells_stacks_apart():
    stack = _LazyStack()
    signature = image_signature(stack)
    assert 0 < len(stack.read) <= 8  # a few sampled slices, not the 400 of the stack (nor a decode of all)
    other = _LazyStack()
    other.shape = (401, 240, 320, 3)
    assert image_signature(other) != signature


def test_kill_9_while_writing_leaves_a_readable_folder_with_everything_written_before(tmp_path):
    folder, _ = _folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_WRITER), str(folder.path)],
                            stdout=subprocess.PIPE, text=True, env=env)
    done = 0
    deadline = time.monotonic() + 60
    while done < 25 and time.monotonic() < deadline:
        done = int(proc.stdout.readline() or done)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done >= 25, "the writer did not start"

    back = WorkFolder.open(folder.path).restore()
    seqs = [e["seq"] for e in back.events]
    assert seqs[:done] == list(range(1, done + 1)), "an event confirmed before the kill is missing"
    assert back.skipped <= 1
    last = back.events[-1]["objects"][0]
    for index in range(folder.shape[0]):  # every slice's labels file is whole and holds a committed object
        ids = set(np.unique(back.labels[index])) - {0}
        assert len(ids) == 1 and ids.pop() <= last + 1


def test_coco_export_decodes_to_the_same_masks_with_class_and_frame_names(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    labels = np.zeros((3, 24, 30), np.int32)
    labels[0, 2:9, 3:12] = 1
    labels[0, 15:20, 20:29] = 2
    labels[2, 0:24, 0:2] = 1
    labels[2, 10:11, 10:11] = 7
    names = ["a.png", "b.png", "c.png"]
    out = write_coco(tmp_path / "coco.json", coco_json(labels, frame_names=names, class_names={1: "grasper",
                                                                                              2: "hook"}))
    coco = COCO(str(out))
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == names
    assert {c["name"] for c in coco.cats.values()} == {"grasper", "hook", "object"}
    seen = 0
    for ann in coco.anns.values():
        frame = coco.imgs[ann["image_id"]]["frame_index"]
        np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]).astype(bool),
                                      labels[frame] == ann["object_id"])
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), labels[frame] == ann["object_id"])
        name = coco.cats[ann["category_id"]]["name"]
        assert name == {1: "grasper", 2: "hook"}.get(ann["object_id"], "object")
        seen += 1
    assert seen == 4


def test_prompts_csv_is_read_back_by_rpsam2_propagate(tmp_path):
    from napari_rpsam2.cli.propagate import read_prompts

    events = [{"kind": "commit", "prompts": [{"slice": [3], "object": 2, "clicks": [[10.5, 4.0], [3.0, 3.0]],
                                              "labels": [1, 0], "box": [1, 2, 20, 30]}]},
              {"kind": "undo", "undoes": 9},
              {"kind": "propagation", "prompts": [{"slice": [0], "object": 5, "clicks": [], "labels": [],
                                                   "box": None, "mask": "mask0"}]}]
    rows, left_out = prompt_rows(events)
    assert left_out == 1  # the mask prompt has no CSV form
    prompts = read_prompts(write_prompts_csv(tmp_path / "p.csv", rows))
    assert [(p.slice, p.object) for p in prompts] == [(3, 2), (3, 2), (3, 2)]
    np.testing.assert_allclose(prompts[0].points, [[10.5, 4.0]])
    assert prompts[1].labels.tolist() == [0]
    assert prompts[2].box == (1, 2, 20, 30)


def test_labels_export_is_a_tiff_stack_with_the_same_ids(tmp_path):
    import tifffile

    labels = np.zeros((2, 8, 9), np.int32)
    labels[1, 3, 4] = 70000
    np.testing.assert_array_equal(tifffile.imread(write_labels(tmp_path / "l.tif", labels)), labels)


def test_a_2d_image_is_one_plane_and_exports_under_its_file_name(tmp_path):
    from pycocotools.coco import COCO

    from napari_rpsam2.app import workfolder as wf
    from napari_rpsam2.cli.propagate import read_prompts

    image = np.zeros((20, 24, 3), np.uint8)
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"")
    folder = wf.open_for_image(image, (20, 24), image_path=source)
    labels = np.zeros((20, 24), np.int32)
    labels[3:9, 4:10] = 1
    folder.record("commit", {"objects": [1], "prompts": [{"slice": [], "object": 1, "clicks": [[5.0, 6.0]],
                                                          "labels": [1], "box": None}]}, labels=labels, slices=[()])
    assert [p.name for p in (folder.path / "labels").iterdir()] == ["plane.tif"]
    summary = wf.export(folder, labels=tmp_path / "l.tif", prompts=tmp_path / "p.csv", coco=tmp_path / "c.json")
    assert summary == {"objects": 1, "skipped_lines": 0, "prompt_rows": 1, "prompts_left_out": 0, "annotations": 1}
    coco = COCO(str(tmp_path / "c.json"))
    assert [img["file_name"] for img in coco.imgs.values()] == ["photo.jpg"]
    assert [(p.slice, p.object) for p in read_prompts(tmp_path / "p.csv")] == [(0, 1)]


def test_journal_and_folder_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        folder, _ = _folder(tmp_path)
        _commit(folder, np.zeros(folder.shape, np.int32), 0, 1, [[1.0, 1.0]])
    finally:
        os.umask(old)
    assert (folder.path / "objects.jsonl").stat().st_mode & 0o777 == 0o644
    assert folder.path.stat().st_mode & 0o777 == 0o755
