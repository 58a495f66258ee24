"""Label volumes that do not grow with the stack: dense when small, chunked and compressed in memory when large.

A Labels layer for a 15,000-frame 1024×768 video would be a 47 GB int32
array, and every propagated frame would touch megabytes of it.
:func:`new_label_volume` returns a plain numpy array when the dense volume is
at most :func:`dense_limit_bytes` (256 MiB unless the environment variable
``NAPARI_RPSAM2_DENSE_LABELS_MIB`` says otherwise), and otherwise an
in-memory zarr array: one chunk per slice (tiles of at most 1024×1024),
Blosc-LZ4 at level 1, fill value 0.  Slices never written cost nothing;
written ones cost what their labels compress to.

The helpers here read such volumes with basic indexing only, one stored
slice at a time (:func:`label_max`, :func:`label_ids`, :func:`planes_in_use`),
so nothing materialises the whole volume.  Qt- and napari-free.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["DENSE_LIMIT_ENV", "new_label_volume", "dense_limit_bytes", "is_chunked", "held_in_memory",
           "planes_in_use", "has_labels", "label_max", "label_ids", "copy_label_volume"]

DENSE_LIMIT_ENV = "NAPARI_RPSAM2_DENSE_LABELS_MIB"
DEFAULT_DENSE_LIMIT_MIB = 256
TILE = 1024

#: per chunked array's store (by id, dropped with the store): its chunk dict and, per chunk key,
#: (stored buffer, {"max": ..., "ids": ...}) computed from that buffer
_STORES: dict[int, tuple[dict, dict]] = {}


def dense_limit_bytes() -> int:
    """Largest label volume (bytes) kept as a dense numpy array; ``NAPARI_RPSAM2_DENSE_LABELS_MIB`` overrides."""
    text = os.environ.get(DENSE_LIMIT_ENV, "").strip()
    try:
        mib = float(text) if text else DEFAULT_DENSE_LIMIT_MIB
    except ValueError:
        mib = DEFAULT_DENSE_LIMIT_MIB
    return int(max(mib, 0.0) * 2**20)


def new_label_volume(shape: tuple[int, ...], dtype: Any = np.int32, *, dense_limit: int | None = None) -> Any:
    """An all-0 label volume of ``shape``: numpy when small, an in-memory compressed zarr array when large.

    Parameters
    ----------
    shape : tuple of int
        Leading axes (slices) then (H, W).
    dtype : dtype
        Integer dtype of the labels.
    dense_limit : int, optional
        Bytes above which the volume is chunked (default :func:`dense_limit_bytes`).
    """
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    limit = dense_limit_bytes() if dense_limit is None else int(dense_limit)
    if len(shape) < 2 or int(np.prod(shape, dtype=np.float64)) * dtype.itemsize <= limit:
        return np.zeros(shape, dtype)
    import zarr
    from zarr.codecs import BloscCodec
    from zarr.storage import MemoryStore

    chunks: dict = {}
    store = MemoryStore(chunks)
    array = zarr.create_array(store=store, shape=shape, dtype=dtype, fill_value=0, zarr_format=3,
                              chunks=(1,) * (len(shape) - 2) + (min(shape[-2], TILE), min(shape[-1], TILE)),
                              compressors=[BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle")])
    _STORES[id(store)] = (chunks, {})
    weakref.finalize(store, _STORES.pop, id(store), None)
    return array


def is_chunked(volume: Any) -> bool:
    """Whether ``volume`` is a chunked (zarr) array rather than an in-memory numpy one."""
    return not isinstance(volume, np.ndarray) and hasattr(volume, "chunks") and hasattr(volume, "store")


def held_in_memory(volume: Any) -> bool:
    """Whether the plugin can write ``volume`` in place: a numpy array or a chunked (zarr) one."""
    return isinstance(volume, np.ndarray) or is_chunked(volume)


def _stored_chunks(volume: Any) -> tuple[dict, dict] | None:
    if isinstance(volume, np.ndarray):
        return None
    found = _STORES.get(id(getattr(volume, "store", None)))
    return found if found is not None and getattr(volume.store, "_store_dict", found[0]) is found[0] else None


def _chunk_key_parts(key: str) -> tuple[int, ...] | None:
    parts = key.split("/")
    if len(parts) < 2 or parts[0] != "c":
        return None
    try:
        return tuple(int(p) for p in parts[1:])
    except ValueError:
        return None


def _stored(volume: Any) -> Iterator[tuple[str, Any, tuple]] | None:
    """Per stored chunk of a volume made by :func:`new_label_volume`: key, buffer and its basic-index region."""
    found = _stored_chunks(volume)
    if found is None:
        return None
    chunks, _ = found
    shape = volume.chunks

    def walk():
        for key, buffer in list(chunks.items()):
            grid = _chunk_key_parts(key)
            if grid is None or len(grid) != len(shape):
                continue
            region = tuple(slice(g * c, (g + 1) * c) for g, c in zip(grid[-2:], shape[-2:]))
            yield key, buffer, tuple(grid[:-2]) + region
    return walk()


def planes_in_use(volume: Any) -> list[tuple[int, ...]]:
    """Leading indices of the slices that may hold labels (all slices of a dense array; stored ones of a chunked).

    For a chunked volume made by :func:`new_label_volume` only slices with a
    stored (non-0) chunk are listed; for any other array every slice is.
    """
    shape = tuple(np.shape(volume))
    walk = _stored(volume)
    if walk is None:
        return [tuple(int(i) for i in ix) for ix in np.ndindex(*shape[:-2])]
    return sorted({region[:-2] for _, _, region in walk})


def has_labels(volume: Any) -> bool:
    """Whether any voxel of ``volume`` is non-0 (stops at the first slice that has one)."""
    if isinstance(volume, np.ndarray):
        return bool(volume.any())
    return any(np.asarray(volume[ix]).any() for ix in planes_in_use(volume))


def _chunk_stat(volume: Any, which: str) -> Iterator[Any]:
    """``which`` ("max" or "ids") of every stored chunk, reusing what was computed for unchanged chunks."""
    _, cache = _stored_chunks(volume)
    seen = set()
    for key, buffer, region in _stored(volume):
        seen.add(key)
        held = cache.get(key)
        if held is None or held[0] is not buffer:
            held = cache[key] = (buffer, {})
        if which not in held[1]:
            block = np.asarray(volume[region])
            held[1]["max"] = int(block.max()) if block.size else 0
            if which == "ids":
                held[1]["ids"] = np.unique(block)
        yield held[1][which]
    for key in set(cache) - seen:
        del cache[key]


def label_max(volume: Any) -> int:
    """Largest label in ``volume`` (0 when empty), read one stored chunk or slice at a time."""
    if isinstance(volume, np.ndarray):
        return int(volume.max()) if volume.size else 0
    if _stored(volume) is not None:
        return max([0, *_chunk_stat(volume, "max")])
    shape = tuple(np.shape(volume))
    best = 0
    for ix in np.ndindex(*shape[:-2]):
        plane = np.asarray(volume[ix])
        if plane.size:
            best = max(best, int(plane.max()))
    return best


def label_ids(volume: Any) -> np.ndarray:
    """Sorted non-0 labels in ``volume``, read one stored chunk or slice at a time."""
    if isinstance(volume, np.ndarray):
        ids = np.unique(volume)
        return ids[ids != 0]
    if _stored(volume) is not None:
        parts = list(_chunk_stat(volume, "ids"))
    else:
        parts = [np.unique(np.asarray(volume[ix])) for ix in np.ndindex(*tuple(np.shape(volume))[:-2])]
    ids = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return ids[ids != 0]


def copy_label_volume(source: Any, dtype: Any = None) -> Any:
    """``source`` copied slice by slice into :func:`new_label_volume` (chunked when large)."""
    shape = tuple(np.shape(source))
    out = new_label_volume(shape, dtype if dtype is not None else source.dtype)
    if isinstance(out, np.ndarray):
        out[...] = np.asarray(source)
        return out
    for ix in np.ndindex(*shape[:-2]):
        plane = np.asarray(source[ix])
        if plane.any():
            out[ix] = plane
    return out
