"""Label volumes for long stacks: chunked and compressed in memory, read and written one slice at a time.

The plugin's paths that write into a target (commits, propagation, undo,
export) must work on such a volume exactly as on a numpy array, and never
make it dense.
"""

from __future__ import annotations

import resource
import sys

import numpy as np
import pytest

from napari_rpsam2.app.click_commit import plan_commit, plan_undo
from napari_rpsam2.app.label_changes import LabelChange
from napari_rpsam2.app.propagation import renumber_taken_ids, write_new_labels
from napari_rpsam2.io.label_volume import (
    DENSE_LIMIT_ENV,
    has_labels,
    is_chunked,
    label_ids,
    label_max,
    new_label_volume,
    planes_in_use,
)
from napari_rpsam2.model.label_planes import LabelPlanes
from napari_rpsam2.model.propagation import PropagationResult


def _rss_mib() -> float:
    """Current resident memory of this process (MiB), from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_small_volumes_are_numpy_large_ones_chunked_and_the_limit_comes_from_the_environment(monkeypatch):
    assert isinstance(new_label_volume((4, 64, 64)), np.ndarray)
    big = new_label_volume((15_000, 768, 1024))  # 47 GB dense
    assert is_chunked(big) and big.shape == (15_000, 768, 1024) and big.dtype == np.int32
    monkeypatch.setenv(DENSE_LIMIT_ENV, "0")
    assert is_chunked(new_label_volume((4, 64, 64)))
    monkeypatch.setenv(DENSE_LIMIT_ENV, "1")  # 1 MiB: a 4×64×64 int32 volume (64 KiB) is dense again
    assert isinstance(new_label_volume((4, 64, 64)), np.ndarray)


def test_max_ids_and_planes_in_use_follow_writes_and_erasures():
    vol = new_label_volume((50, 40, 30), dense_limit=0)
    assert label_max(vol) == 0 and planes_in_use(vol) == [] and label_ids(vol).size == 0 and not has_labels(vol)
    vol[7, 3:9, 4:10] = 5
    vol[31, 0, 0] = 12
    assert label_max(vol) == 12 and planes_in_use(vol) == [(7,), (31,)] and has_labels(vol)
    assert label_ids(vol).tolist() == [5, 12]
    vol[31, 0, 0] = 0  # the slice is all 0 again: it no longer counts
    assert label_max(vol) == 5 and planes_in_use(vol) == [(7,)] and label_ids(vol).tolist() == [5]
    dense = np.zeros((50, 40, 30), np.int32)
    dense[7, 3:9, 4:10] = 5
    assert np.array_equal(vol[:], dense)


def test_commit_undo_and_label_change_work_on_a_chunked_volume_as_on_numpy():
    rng = np.random.default_rng(0)
    mask = rng.random((40, 30)) > 0.6
    results = []
    for vol in (np.zeros((6, 40, 30), np.int32), new_label_volume((6, 40, 30), dense_limit=0)):
        vol[2, :5, :5] = 3
        record = plan_commit(vol, (2,), mask)
        assert record.label_id == 4
        vol[record.indices] = record.label_id
        written = np.array(vol[:])
        vol[2, 39, 29] = 9  # the person edits a pixel afterwards
        vol[plan_undo(vol, record)] = 0
        results.append((written, np.array(vol[:])))
    (w_np, u_np), (w_z, u_z) = results
    assert np.array_equal(w_np, w_z) and np.array_equal(u_np, u_z)
    assert (w_z[2] == 4).sum() == (mask[5:].sum() + mask[:5, 5:].sum())  # never over object 3
    assert not (u_z == 4).any() and u_z[2, 39, 29] == 9
    change = LabelChange.of_planes([((1,), np.zeros((40, 30), np.int32), np.where(mask, 7, 0).astype(np.int32))])
    vol = new_label_volume((6, 40, 30), dense_limit=0)
    change.redo(vol)
    assert np.array_equal(np.asarray(vol[1]) == 7, mask) and planes_in_use(vol) == [(1,)]
    change.undo(vol)
    assert planes_in_use(vol) == []


def _result(shape: tuple[int, int, int], index: int, plane: np.ndarray, ids: tuple[int, ...]) -> PropagationResult:
    labels = LabelPlanes(shape, np.int32)
    labels[index] = plane
    tracked = np.zeros(shape[0], bool)
    tracked[index] = True
    return PropagationResult(labels, np.zeros((shape[0], len(ids)), np.float32), ids, tracked)


@pytest.mark.skipif(sys.platform != "linux", reason="RSS from /proc")
def test_a_15000_frame_layer_is_made_and_a_propagated_slice_written_without_growing_memory():
    """The issue's video: 15,000 frames of 1024×768 would be 47 GB of int32 labels."""
    shape = (15_000, 768, 1024)
    before = _rss_mib()
    vol = new_label_volume(shape)
    plane = np.zeros(shape[1:], np.int32)
    plane[100:700, 50:900] = 1  # a large object (the random-weight masks cover ~60 % of a frame)
    plane[300:400, 950:1000] = 2
    record = write_new_labels(vol, _result(shape, 9_876, plane, (1, 2)))
    assert record.change.slice_indices == [(9_876,)]
    assert np.array_equal(vol[9_876], plane) and label_max(vol) == 2 and planes_in_use(vol) == [(9_876,)]
    _, renamed = renumber_taken_ids(_result(shape, 10, plane, (1, 2)), vol, [2])
    assert renamed == {2: 3}  # the 'taken ids' check scans only the slice that holds labels
    grown = _rss_mib() - before
    assert grown < 64, f"memory grew by {grown:.0f} MiB for one written slice of a 47 GB volume"
    assert vol.nbytes_stored() < 2**20  # the written slice, compressed


def test_export_and_writer_read_a_chunked_volume_slice_by_slice(tmp_path):
    import tifffile

    from napari_rpsam2.annotations.export import coco_json
    from napari_rpsam2.annotations.export import write_labels as export_labels
    from napari_rpsam2.io import write_labels

    vol = new_label_volume((5, 20, 24), dense_limit=0)
    vol[1, 2:8, 3:9] = 2
    vol[4, 10:15, 0:4] = 300
    dense = np.asarray(vol[:])
    out = write_labels(vol, tmp_path / "labels.tif")
    assert np.array_equal(tifffile.imread(out), dense) and tifffile.imread(out).dtype == np.uint16
    pngs = write_labels(vol, tmp_path / "frames")
    assert sorted(p.name for p in pngs.glob("*.png"))[:2] == ["frame_000000.png", "frame_000001.png"]
    assert np.array_equal(tifffile.imread(export_labels(tmp_path / "export.tif", vol)), dense)
    coco = coco_json(vol)
    assert {a["object_id"] for a in coco["annotations"]} == {2, 300}
    assert coco == coco_json(dense)


def test_a_work_folder_records_a_chunked_volume_and_restores_it_chunked(tmp_path, monkeypatch):
    from napari_rpsam2.annotations import WorkFolder

    monkeypatch.setenv(DENSE_LIMIT_ENV, "0")  # as for a long video
    vol = new_label_volume((30, 32, 40))
    assert is_chunked(vol)
    folder = WorkFolder.create(tmp_path / "clip.rpsam2", image_path="clip.mp4", shape=(30, 32, 40), signature="s")
    vol[17, 4:20, 5:25] = 1
    folder.record("commit", {"objects": [1], "prompts": [{"slice": [17], "object": 1, "clicks": [[9.0, 9.0]],
                                                          "labels": [1], "box": None}]}, labels=vol, slices=[(17,)])
    restored = folder.read_labels()
    assert is_chunked(restored) and planes_in_use(restored) == [(17,)]
    assert np.array_equal(restored[:], vol[:])


def test_the_command_lines_compact_result_is_written_slice_by_slice(tmp_path, monkeypatch):
    import tifffile

    from napari_rpsam2.io import write_labels

    labels = LabelPlanes((6, 16, 20), np.int32)
    plane = np.zeros((16, 20), np.int32)
    plane[3:9, 4:12] = 2
    labels[4] = plane
    def dense(*args, **kwargs):
        raise AssertionError("the whole volume was made dense")

    monkeypatch.setattr(LabelPlanes, "__array__", dense)
    written = tifffile.imread(write_labels(labels, tmp_path / "labels.tif"))
    assert written.shape == (6, 16, 20) and np.array_equal(written[4], plane) and not written[:4].any()
