"""napari readers and the labels writer (npe2 contributions): a thin front end over :mod:`napari_rpsam2.io`.

Readers return layer data tuples, so this module needs no napari import:

* videos (MP4, AVI, MOV, MKV) as a lazy dask array, one frame per chunk, decoded only when shown;
* NIfTI volumes and DICOM folders with their spacing as the layer's scale and a CT window as contrast limits;
* zarr arrays and OME-Zarr images, read a slice at a time;
* folders of frames (PNG, JPEG, TIFF, BMP) in natural order (``2.png`` before ``10.png``), read lazily.

The writer saves a labels layer as a TIFF stack, a NIfTI volume (the source's affine when the labels
carry it, else their scale) or a folder of PNGs (``labels.png`` → folder ``labels/``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .io import ImageSource, InputError, open_images, write_labels
from .io.arrays import is_zarr
from .io.frames import FRAME_SUFFIXES
from .io.label_volume import is_chunked
from .io.source import path_label
from .io.video import VIDEO_SUFFIXES
from .io.volumes import is_dicom_folder, is_nifti

__all__ = ["get_reader", "read_path", "lazy_array", "write_labels_layer", "METADATA_KEY"]

METADATA_KEY = "napari_rpsam2_io"
"""Key of a layer's metadata holding what the reader knew (path, kind, slice names, affine, window)."""

LayerData = tuple[Any, dict, str]


class _Chunks:
    """Adapter giving dask ``stack[tuple of slices]`` on a stack that reads one slice at a time."""

    def __init__(self, stack) -> None:
        self._stack = stack
        self.shape, self.dtype, self.ndim = tuple(stack.shape), np.dtype(stack.dtype), len(stack.shape)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        rows = range(self.shape[0])[first] if isinstance(first, slice) else [int(first)]
        planes = np.stack([np.asarray(self._stack[i]) for i in rows]) if len(rows) else \
            np.empty((0, *self.shape[1:]), self.dtype)
        return planes[(slice(None), *rest)] if isinstance(first, slice) else planes[0][rest]


def lazy_array(stack):
    """A dask array over a lazy stack, one slice per chunk (nothing is read until a slice is computed)."""
    import dask.array as da

    chunks = (1, *stack.shape[1:])
    return da.from_array(_Chunks(stack), chunks=chunks, name=f"rpsam2-{uuid.uuid4().hex}", lock=False,
                         asarray=False, fancy=False, meta=np.empty((0,) * len(stack.shape), dtype=stack.dtype))


def _has_frames(folder: Path) -> bool:
    return any(p.suffix.lower() in FRAME_SUFFIXES for p in folder.iterdir() if p.is_file())


def _is_ours(path: Path) -> bool:
    if path.is_dir():
        return is_zarr(path) or is_dicom_folder(path) or _has_frames(path)
    return is_nifti(path) or path.suffix.lower() in VIDEO_SUFFIXES or path.suffix.lower() == ".dcm"


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader hook: a reader for videos, NIfTI, DICOM, zarr and frame folders; ``None`` for anything else."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return read_path if _is_ours(Path(path)) else None


def _layer_metadata(source: ImageSource) -> dict:
    info = {"path": str(source.path), "kind": source.kind, "names": list(source.names),
            "contrast_limits": list(source.contrast_limits) if source.contrast_limits else None}
    if source.affine is not None:
        info["affine"] = np.asarray(source.affine).tolist()
    for key in ("window", "fps", "qform_code", "sform_code", "modality"):
        if key in source.meta:
            info[key] = source.meta[key]
    return {METADATA_KEY: info}


def read_path(path: str | list[str]) -> list[LayerData]:
    """Open one path as an image layer (lazy where the format allows)."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    try:
        source = open_images(path)
    except InputError as err:  # napari shows the message
        raise ValueError(str(err)) from err
    in_memory = isinstance(source.data, np.ndarray) and not isinstance(source.data, np.memmap)
    data = source.data if in_memory else lazy_array(source.data)
    kwargs: dict = {"name": path_label(Path(path)), "rgb": source.rgb, "metadata": _layer_metadata(source)}
    if source.contrast_limits is not None:
        kwargs["contrast_limits"] = list(source.contrast_limits)
    if source.spacing is not None:
        kwargs["scale"] = [float(v) for v in source.spacing]
    if not source.rgb:
        kwargs["colormap"] = "gray"
    return [(data, kwargs, "image")]


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer for labels: ``.tif``/``.tiff``, ``.nii``/``.nii.gz`` or ``.png`` (a folder)."""
    out = Path(path)
    labels = data if is_chunked(data) else np.asarray(data)  # a chunked volume is written slice by slice
    if labels.ndim == 2:
        labels = np.asarray(labels)[None]
    info = dict((meta.get("metadata") or {}).get(METADATA_KEY, {}))
    scale = meta.get("scale")
    if out.suffix.lower() == ".png":
        out = out.with_suffix("")
    names = info.get("names")
    if names is not None and len(names) != labels.shape[0]:
        names = None
    spacing = tuple(float(s) for s in scale[-3:]) if scale is not None and len(scale) >= 3 else None
    source = ImageSource(labels, Path(info.get("path", out)), info.get("kind", "labels"),
                         names or [f"frame_{i:06d}" for i in range(labels.shape[0])], spacing=spacing,
                         affine=None if "affine" not in info else np.asarray(info["affine"], dtype=float),
                         meta={k: info[k] for k in ("qform_code", "sform_code") if k in info})
    record = {"layer": meta.get("name"), "window": info.get("window"), "contrast_limits": info.get("contrast_limits")}
    return [str(write_labels(labels, out, source, {"napari": record}))]
