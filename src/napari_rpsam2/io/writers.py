"""Label outputs in the input's form: a TIFF stack, a folder of per-frame PNGs, or NIfTI with the source's affine.

The form follows the output path: ``.tif``/``.tiff`` a TIFF stack, ``.nii``/
``.nii.gz`` a NIfTI volume, anything else a folder of PNGs (one per slice,
named after the slices: the frame files' stems, ``frame_000123`` for a
video).  Every output records what it was made from (``metadata``: the
contrast rule, the source) — in the TIFF's description, in a NIfTI comment
extension, or in ``rpsam2.json`` inside the PNG folder.  Writes are atomic:
a temp file or folder is renamed into place, so a failure leaves the
previous output unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .._atomic import OutputError, atomic_write, check_writable
from .contrast import contrast_record
from .label_volume import label_max, planes_in_use
from .source import ImageSource, InputError

__all__ = ["output_form", "default_form", "check_output", "write_labels", "write_tiff", "write_png_folder",
           "write_nifti", "write_plane", "label_dtype", "METADATA_FILE"]

METADATA_FILE = "rpsam2.json"


def output_form(path: str | os.PathLike) -> str:
    """``"tiff"``, ``"nifti"`` or ``"png"`` (a folder) from an output path."""
    name = str(path).lower()
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if Path(name).suffix in (".png", ".jpg", ".jpeg", ".zarr", ".csv", ".json", ".npy"):
        raise InputError(f"output {path}: write labels to a .tif stack, a .nii.gz volume or a folder (per-frame "
                         "PNGs; a name without extension)")
    return "png"


def default_form(source: ImageSource) -> str:
    """The output form matching an input: NIfTI for volumes, PNGs for videos and PNG/JPEG frames, else TIFF."""
    if source.is_volume:
        return "nifti"
    if source.kind == "video" or (source.kind == "frames" and not {".tif", ".tiff"} >= set(
            source.meta.get("suffixes", []))):
        return "png"
    return "tiff"


def check_output(path: str | os.PathLike, what: str = "output") -> tuple[Path, str]:
    """Check an output path before any work: its folder exists and can be written; returns ``(path, form)``."""
    p = Path(path).expanduser()
    form = output_form(p)
    if form != "png" and p.is_dir():
        raise InputError(f"output {p} is a folder; give a file name ending in .tif or .nii.gz")
    if form == "png" and p.exists() and not p.is_dir():
        raise InputError(f"output {p} is a file; give a folder name (per-frame PNGs) or a .tif/.nii.gz name")
    if not p.parent.is_dir():
        raise InputError(f"output folder {p.parent} does not exist; create it first")
    check_writable(p.parent, what)
    return p, form


def _by_slice(labels) -> bool:
    """Whether ``labels`` is a stack to read one slice at a time (a chunked or compact volume, not numpy)."""
    return not isinstance(labels, np.ndarray) and hasattr(labels, "shape") and len(labels.shape) > 2


def _planes(labels) -> tuple[tuple[int, ...], object]:
    """``(shape, iterator of 2D planes)`` of a label stack, read one slice at a time (basic indexing)."""
    shape = tuple(np.shape(labels))
    return shape, (np.asarray(labels[ix]) for ix in np.ndindex(*shape[:-2]))


def label_dtype(labels: np.ndarray):
    """The smallest unsigned type holding the label ids (uint8, uint16 or uint32)."""
    if _by_slice(labels):  # read one slice at a time (a chunked volume: only the slices holding labels)
        top = label_max(labels)
        low = min([0, *(int(np.asarray(labels[ix]).min()) for ix in planes_in_use(labels))])
    else:
        top, low = int(np.max(labels, initial=0)), int(np.min(labels, initial=0))
    if low < 0:
        raise InputError("labels hold negative ids; use 0 for background and 1, 2, … for objects")
    return np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32


def write_tiff(labels: np.ndarray, out: str | os.PathLike, metadata: dict | None = None) -> Path:
    """A zlib-compressed TIFF stack; ``metadata`` as JSON in its description.

    A chunked or compact label volume is written one slice at a time (never made dense).
    """
    import tifffile

    text = json.dumps(metadata or {}, default=str)
    if _by_slice(labels):
        dtype = label_dtype(labels)
        shape, planes = _planes(labels)
        return atomic_write(out, lambda tmp: tifffile.imwrite(
            tmp, (p.astype(dtype, copy=False) for p in planes), shape=shape, dtype=dtype, compression="zlib",
            photometric="minisblack", description=text, metadata=None))
    arr = np.asarray(labels)
    arr = arr.astype(label_dtype(arr), copy=False)
    return atomic_write(out, lambda tmp: tifffile.imwrite(tmp, arr, compression="zlib", description=text,
                                                          metadata=None))


def write_plane(plane: np.ndarray, out: str | os.PathLike) -> Path:
    """One label slice as ``.tif`` or ``.png`` (the path's suffix)."""
    arr = np.asarray(plane)
    arr = arr.astype(label_dtype(arr), copy=False)
    if Path(out).suffix.lower() == ".png":
        from PIL import Image

        if arr.dtype == np.uint32:
            raise InputError(f"{out}: label ids above 65535 do not fit a PNG; write a .tif instead")
        return atomic_write(out, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))
    import tifffile

    return atomic_write(out, lambda tmp: tifffile.imwrite(tmp, arr, compression="zlib"))


def write_png_folder(labels: np.ndarray, out: str | os.PathLike, names: list[str] | None = None,
                     metadata: dict | None = None) -> Path:
    """One PNG per slice, ``<name>.png``, in a folder written beside ``out`` and renamed into place."""
    out = Path(out)
    arr = labels if _by_slice(labels) else np.asarray(labels)  # chunked or compact: one slice at a time
    n = arr.shape[0]
    names = list(names) if names is not None else [f"frame_{i:06d}" for i in range(n)]
    if len(names) != n:
        raise InputError(f"{len(names)} slice names for {n} label slices")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {out.parent} does not exist; create it first")
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for i, name in enumerate(names):
            write_plane(np.asarray(arr[i]), tmp / f"{name}.png")
        (tmp / METADATA_FILE).write_text(json.dumps(metadata or {}, indent=1, default=str), encoding="utf-8")
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        raise OutputError(f"writing {out} failed ({err.strerror or err}); the previous folder, if any, is "
                          "unchanged. Free some disk space or choose another output folder.") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_nifti(labels: np.ndarray, out: str | os.PathLike, affine: np.ndarray | None = None,
                spacing: tuple[float, ...] | None = None, metadata: dict | None = None,
                codes: dict | None = None) -> Path:
    """Labels ``(Z, Y, X)`` as a NIfTI volume ``(X, Y, Z)`` with ``affine`` (else a diagonal from ``spacing``)."""
    import gzip

    import nibabel as nib

    arr = np.asarray(labels)
    arr = arr.astype(label_dtype(arr), copy=False)
    if arr.ndim == 2:
        arr = arr[None]
    if affine is None:
        dz, dy, dx = (tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0))[-3:]
        affine = np.diag([dx, dy, dz, 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(arr, (2, 1, 0))), np.asarray(affine, float))
    codes = codes or {}
    img.header.set_qform(affine, code=int(codes.get("qform_code", 1)) or 1)
    img.header.set_sform(affine, code=int(codes.get("sform_code", 1)) or 1)
    if metadata:
        img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", json.dumps(metadata, default=str).encode()))
    raw = img.to_bytes()
    data = gzip.compress(raw, compresslevel=6) if str(out).lower().endswith(".gz") else raw
    return atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))


def write_labels(labels: np.ndarray, out: str | os.PathLike, source: ImageSource | None = None,
                 metadata: dict | None = None) -> Path:
    """Write a label stack ``(N, H, W)`` in the form of ``out`` (see the module), named and placed like ``source``."""
    out = Path(out)
    form = output_form(out)
    meta = dict(metadata or {})
    if source is not None:
        meta.setdefault("source", {"path": str(source.path), "kind": source.kind,
                                   "spacing": list(source.spacing) if source.spacing else None})
        if source.contrast_limits is not None:
            meta.setdefault("contrast", contrast_record(source))
    if form == "tiff":
        return write_tiff(labels, out, meta)
    if form == "nifti":
        affine = None if source is None else source.affine
        spacing = None if source is None else source.spacing
        codes = None if source is None else {k: source.meta[k] for k in ("qform_code", "sform_code")
                                             if k in source.meta}
        return write_nifti(labels, out, affine, spacing, meta, codes)
    names = None if source is None else source.names
    return write_png_folder(labels, out, names, meta)
