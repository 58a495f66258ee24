"""What a propagation keeps does not grow with the number of frames, apart from its compact labels.

A run holds SAM2's outputs of the frames within its memory window (and of the
prompted frames), the labels compactly (per slice the box of the objects and
run-length values), and no frame embedding in the model's memory cache; its
result is written into a label volume only where it changes something, so the
untouched rest of a fresh, all-0 volume costs no memory.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from small_sam2 import drifting_discs, small_model

from napari_rpsam2 import RPSAM2
from napari_rpsam2.app.propagation import write_new_labels
from napari_rpsam2.model import EmbeddingCache, FramePrompt
from napari_rpsam2.model.embedding import ImageEmbedding
from napari_rpsam2.model.label_planes import LabelPlanes
from napari_rpsam2.model.propagation import PropagationResult

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # SAM2's CUDA hole filling is absent on CPU

SIZE = 128
WINDOW = ("++model.max_obj_ptrs_in_encoder=4",)  # a 7-frame memory window: a 20-frame run already drops outputs


def _tensor_bytes(obj, seen: set) -> int:
    """Bytes of the distinct tensors held anywhere in ``obj`` (nested dicts, lists, tuples)."""
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in obj)
    return 0


@pytest.fixture
def fast_model(monkeypatch):
    """The small SAM2 with its image encoder replaced by a fixed random embedding per picture.

    Memory attention, the memory encoder and the decoder are SAM2's own; an
    empty embedding cache of its own, so nothing leaks into other tests.
    """
    backbone = small_model(*WINDOW).backbone
    e = backbone.input_size // 16

    def encode(rgb: np.ndarray) -> ImageEmbedding:
        g = torch.Generator().manual_seed(zlib.crc32(np.ascontiguousarray(rgb).tobytes()))
        image = torch.randn(1, 256, e, e, generator=g)
        high = [torch.randn(1, 32, 4 * e, 4 * e, generator=g), torch.randn(1, 64, 2 * e, 2 * e, generator=g)]
        return ImageEmbedding(image, high, tuple(rgb.shape[:2]), image + 0.1)

    monkeypatch.setattr(backbone, "encode", encode)
    return RPSAM2(backbone, cache=EmbeddingCache(1 << 30))


def test_a_three_times_longer_run_holds_no_more_state_and_keeps_labels_compact(fast_model):
    frames = drifting_discs(60, SIZE)
    held = {}
    for n in (20, 60):
        session = fast_model.propagation_session(frames[:n])
        session.add([FramePrompt(0, 1, points=[(42, 25)])], refine=False)
        result = session.run("forward")
        assert result.tracked.all() and np.asarray(result.labels).any()
        held[n] = _tensor_bytes(session.state, set()), result.labels.nbytes
    (state_short, _), (state_long, labels_long) = held[20], held[60]
    # SAM2's outputs beyond its memory window are gone: the state does not grow with the frames
    assert state_long <= 1.05 * state_short, held
    # the labels: at most a bit per pixel for one object (a 32nd of a dense int32 volume)
    assert labels_long <= 60 * (SIZE * SIZE / 8 + 16), held
    # no frame embedding stays in the memory cache (a long video would fill it with frames nobody clicked)
    assert len(fast_model.cache) == 0 and fast_model.cache.nbytes == 0


class _RecordingVolume:
    """A label volume that records the region of every write."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.dtype, self.shape, self.written = data, data.dtype, data.shape, []

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value) -> None:
        self.written.append(self.data[key].size)
        self.data[key] = value


def test_a_result_is_written_only_where_it_changes_the_labels():
    n, h, w = 4, 120, 160
    labels = LabelPlanes((n, h, w))
    for t in range(n):
        plane = np.zeros((h, w), np.int32)
        plane[10 + t:30 + t, 20:50] = 3  # a 20 × 30 object
        labels[t] = plane
    result = PropagationResult(labels, np.zeros((n, 1), np.float32), (3,), np.ones(n, bool))
    target = _RecordingVolume(np.zeros((n, h, w), np.int32))
    target.data[0, 0, 0] = 7
    record = write_new_labels(target, result)
    assert np.array_equal(target.data[1:], np.asarray(labels)[1:])
    assert target.data[0, 0, 0] == 7 and record.pixels == n * 20 * 30
    assert len(target.written) == n and max(target.written) == 20 * 30  # not the whole 120 × 160 slice
    record.undo(target.data)
    assert target.data.sum() == 7


def test_label_planes_read_like_a_volume():
    rng = np.random.default_rng(0)
    dense = np.zeros((3, 40, 50), np.int32)
    dense[1, 5:25, 10:30] = rng.integers(0, 4, (20, 20))
    dense[2, -1, -1] = 9
    planes = LabelPlanes(dense.shape)
    for t in range(3):
        planes[t] = dense[t]
    assert np.array_equal(np.asarray(planes), dense) and planes.indices == [1, 2]
    assert np.array_equal(planes[1], dense[1]) and np.array_equal(planes[1, 5:9, 10], dense[1, 5:9, 10])
    assert np.array_equal(planes[-1], dense[-1]) and np.array_equal(planes[1:], dense[1:])
    assert np.array_equal(np.asarray(planes.relabel({9: 4, 3: 5})), np.where(dense == 9, 4, np.where(dense == 3, 5, dense)))
    smooth = np.zeros((40, 50), np.int32)
    smooth[5:35, 10:40] = 300
    planes[0] = smooth
    assert planes.stored(0).nbytes <= 30 * 8  # a few runs per row
    speckled = (np.indices((40, 50)).sum(0) % 2).astype(np.int32) * 7  # one object, a checkerboard
    planes[0] = speckled
    assert planes.stored(0).nbytes <= speckled.size / 8 + 8 and np.array_equal(planes[0], speckled)
    many = np.arange(40 * 50, dtype=np.int32).reshape(40, 50) % 200  # 200 objects, ragged
    planes[0] = many
    assert planes.stored(0).nbytes <= many.size and np.array_equal(planes[0], many)
    planes[1] = np.zeros((40, 50))
    assert planes.indices == [0, 2] and planes.stored(2).nbytes < 16  # one pixel: one run
    with pytest.raises(ValueError, match="shape"):
        planes[0] = np.zeros((4, 5))


def test_label_planes_read_across_slices_build_only_the_planes_asked_for(monkeypatch):
    """napari with the slice axis rolled asks ``volume[:, row, :]``: that must not build the whole volume."""
    dense = np.zeros((6, 5, 7), np.int32)
    dense[1, 1:4, 2:6], dense[4, 0, 0] = 3, 9
    volume = LabelPlanes(dense.shape)
    for i, plane in enumerate(dense):
        volume[i] = plane
    monkeypatch.setattr(LabelPlanes, "__array__", lambda *a, **k: pytest.fail("the whole volume was built"))
    for key in [(slice(None), 2, slice(None)), (slice(1, 5),), slice(None, None, 2), (slice(None), slice(None), 3),
                (slice(4, 1),)]:
        assert np.array_equal(volume[key], dense[key]), key
