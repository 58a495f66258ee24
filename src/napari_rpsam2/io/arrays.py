"""Multi-page TIFF stacks and zarr / OME-Zarr arrays, read a slice at a time where the file allows."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .source import ImageSource, InputError, path_label

__all__ = ["open_tiff", "open_zarr", "is_zarr", "stack_shape_check"]


def stack_shape_check(shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """Accept ``(H, W)``, ``(H, W, 3)``, ``(N, H, W)`` or ``(N, H, W, 3|4)``; a clear error otherwise."""
    if len(shape) in (3, 4) and not (len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4):
        return shape
    if len(shape) == 2 or len(shape) == 3:
        return shape
    raise InputError(f"{where} has shape {shape}; a stack is (N, H, W) or (N, H, W, 3) — "
                     "save one channel (or one time point) per file")


class _TiffPages:
    """A compressed multi-page TIFF read one page per slice."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype) -> None:
        import tifffile

        self._tif = tifffile.TiffFile(path)
        self._pages = self._tif.series[0].pages
        self._lock = threading.Lock()  # one file handle: napari's dask threads take turns
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            with self._lock:
                return self._pages[int(index)].asarray()
        return np.asarray(self)[index]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.stack([self[i] for i in range(len(self))])
        return out if dtype is None else out.astype(dtype)


def _tiff_data(path: Path):
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            mappable = series.dataoffset is not None
            per_page = len(series.pages) == shape[0] and len(shape) >= 3 and all(
                p is not None and tuple(p.shape) == shape[1:] for p in list(series.pages)[:2])
    except Exception as err:
        raise InputError(f"cannot read {path}: {err}; check that it is a valid TIFF file") from err
    stack_shape_check(shape, str(path))
    if mappable:
        return tifffile.memmap(path, mode="r")
    if per_page:
        return _TiffPages(path, shape, dtype)
    return np.asarray(tifffile.imread(path))


def open_tiff(path: str | os.PathLike) -> ImageSource:
    """A (multi-page) TIFF as a stack: memory-mapped when uncompressed, else read page by page."""
    path = Path(path)
    data = _tiff_data(path)
    if data.ndim == 2 or (data.ndim == 3 and data.shape[-1] in (3, 4) and data.shape[0] > 4):
        data = np.asarray(data)[None]
    rgb = data.ndim == 4
    if rgb and data.shape[-1] == 4:
        data = np.asarray(data)[..., :3]
    stem = path_label(path)
    return ImageSource(data, path, "tiff", [f"{stem}_{i:04d}" for i in range(data.shape[0])], rgb=rgb)


def is_zarr(path: str | os.PathLike) -> bool:
    """Whether a folder is a zarr array or group (v2 or v3), or its name ends in ``.zarr``."""
    p = Path(path)
    if not p.is_dir():
        return False
    return p.suffix.lower() == ".zarr" or any((p / n).exists() for n in (".zarray", ".zgroup", "zarr.json"))


def _multiscale_path(attrs: dict) -> tuple[str, list | None, list | None] | None:
    """The first (finest) level of an OME-Zarr image: ``(path, scale, axes)``."""
    ome = attrs.get("ome", attrs)
    scales = ome.get("multiscales")
    if not scales:
        return None
    first = scales[0]
    ds = first["datasets"][0]
    scale = next((t["scale"] for t in ds.get("coordinateTransformations", []) if t.get("type") == "scale"), None)
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in first.get("axes", [])] or None
    return ds["path"], scale, axes


def _squeeze(arr, scale, axes, where: str):
    """Drop leading length-1 axes (OME-Zarr's t, c) until the array is a stack."""
    shape = tuple(arr.shape)
    d = 0
    while len(shape) - d > 3 and shape[d] == 1 and not (len(shape) - d == 4 and shape[-1] in (3, 4)):
        d += 1
    if d:
        arr = _Indexed(arr, (0,) * d + (slice(None),) * (len(shape) - d))
    kept_scale = None if scale is None else tuple(float(s) for s in scale[d:])
    kept_axes = None if axes is None else list(axes[d:])
    stack_shape_check(tuple(arr.shape), where)
    return arr, kept_scale, kept_axes


class _Indexed:
    """A lazy view ``array[index]`` with fixed integer positions (no data read until indexed)."""

    def __init__(self, array, index: tuple) -> None:
        self._array, self._index = array, index
        self.shape = tuple(n for n, i in zip(array.shape, index) if not isinstance(i, int))
        self.dtype, self.ndim = array.dtype, len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        full, it = [], iter(key)
        for i in self._index:
            full.append(i if isinstance(i, int) else next(it, slice(None)))
        return np.asarray(self._array[tuple(full)])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.asarray(self._array[self._index])
        return out if dtype is None else out.astype(dtype)


def open_zarr(path: str | os.PathLike) -> ImageSource:
    """A zarr array, a group holding one array, or an OME-Zarr image (its finest level)."""
    import zarr

    path = Path(path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        raise InputError(f"cannot open {path} as zarr: {err}") from err
    scale = axes = None
    if isinstance(node, zarr.Group):
        found = _multiscale_path(dict(node.attrs))
        if found is not None:
            node, scale, axes = node[found[0]], found[1], found[2]
        else:
            arrays = [a for _, a in node.arrays()]
            if len(arrays) != 1:
                raise InputError(f"zarr group {path} holds {len(arrays)} arrays and no OME-Zarr image; "
                                 "give the path of one array inside it")
            node = arrays[0]
    arr, scale, axes = _squeeze(node, scale, axes, str(path))
    if arr.ndim == 2:
        arr = np.asarray(arr[:])[None]
        scale = None if scale is None else (1.0, *scale)
    rgb = arr.ndim == 4
    stem = path_label(path)
    spacing = None if scale is None else tuple(scale[:3])
    meta = {"axes": axes} if axes else {}
    return ImageSource(arr, path, "zarr", [f"{stem}_{i:04d}" for i in range(arr.shape[0])], rgb=rgb,
                       spacing=spacing, meta=meta)
