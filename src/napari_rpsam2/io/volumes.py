"""Medical volumes: NIfTI files (nibabel) and DICOM series (pydicom), with spacing, orientation and a window.

A volume is handed on as a stack of axial slices ``(Z, Y, X)``: slice ``k``
is the volume's ``[:, :, k]`` plane, shown with voxel ``Y`` down and ``X``
across.  ``source.affine`` maps voxel ``(X, Y, Z)`` to world coordinates (RAS,
mm) as NIfTI does; label volumes written back as NIfTI use it unchanged, so
they overlay the original in any viewer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .contrast import parse_window, stack_limits, window_limits
from .source import ImageSource, InputError, path_label

__all__ = ["open_nifti", "open_dicom", "is_nifti", "is_dicom_folder", "apply_window"]

_CT_LOOK = (-500.0, 500.0)
"""A volume whose sampled values reach below and above these looks like CT in Hounsfield units."""


def is_nifti(path: str | os.PathLike) -> bool:
    """``.nii`` or ``.nii.gz``."""
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def apply_window(source: ImageSource, window) -> ImageSource:
    """Set a volume's contrast limits from a window (preset name, ``"level,width"``), or a default.

    Without a window: a DICOM series' own window tags, else soft tissue (40, 400) for CT (a DICOM
    series of modality CT, or data reaching below -500 and above 500: Hounsfield units), else the
    stack's sampled range.
    """
    parsed = parse_window(window)
    if parsed is None and "file_window" in source.meta:
        parsed = ("file", *source.meta["file_window"])
    if parsed is None and source.meta.get("modality") == "CT":
        parsed = parse_window("soft-tissue")
    if parsed is None:
        (lo, hi), sampled = stack_limits(source.data)
        source.meta["sampled_slices"] = sampled
        if lo <= _CT_LOOK[0] and hi >= _CT_LOOK[1]:
            parsed = parse_window("soft-tissue")
        else:
            source.contrast_limits = (lo, hi)
            return source
    name, level, width = parsed
    source.meta["window"] = {"name": name, "level": level, "width": width}
    source.contrast_limits = window_limits(level, width)
    return source


def open_nifti(path: str | os.PathLike, window=None) -> ImageSource:
    """A NIfTI volume ``(X, Y, Z)`` as a stack of its ``Z`` slices, with spacing and affine kept."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:
        raise InputError(f"cannot read NIfTI {path}: {err}") from err
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(f"NIfTI {path} has shape {data.shape}; only 3D volumes (one time point) are supported")
    zooms = [float(z) for z in img.header.get_zooms()[:3]] + [1.0] * (3 - len(img.header.get_zooms()[:3]))
    stack = np.transpose(data, (2, 1, 0))
    codes = {"qform_code": int(img.header["qform_code"]), "sform_code": int(img.header["sform_code"])}
    source = ImageSource(stack, path, "nifti", [f"{path_label(path)}_{i:04d}" for i in range(stack.shape[0])],
                         spacing=(zooms[2], zooms[1], zooms[0]), affine=np.asarray(img.affine, dtype=float),
                         meta=codes)
    return apply_window(source, window)


# ---------------------------------------------------------------------- DICOM
def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, AttributeError):
        return None
    return ds if "ImagePositionPatient" in ds or "InstanceNumber" in ds else None


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """A folder whose first files are DICOM (``.dcm`` names or the ``DICM`` marker)."""
    p = Path(path)
    if not p.is_dir():
        return False
    for f in _dicom_files(p)[:5]:
        if f.suffix.lower() == ".dcm":
            return True
        try:
            with open(f, "rb") as fh:
                fh.seek(128)
                if fh.read(4) == b"DICM":
                    return True
        except OSError:
            continue
    return False


class DicomStack:
    """A DICOM series as a lazy stack: slice ``i`` is read from its file (rescaled) when indexed."""

    def __init__(self, files: list[Path], rows: int, cols: int, dtype) -> None:
        self.files = files
        self.shape, self.dtype, self.ndim = (len(files), rows, cols), np.dtype(dtype), 3

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):
        if not isinstance(index, (int, np.integer)):
            return np.asarray(self)[index]
        import pydicom

        path = self.files[int(index)]
        try:
            ds = pydicom.dcmread(str(path))
            plane = ds.pixel_array.astype(np.float64)
        except Exception as err:  # compressed pixel data without a decoder, a damaged file
            raise InputError(f"cannot read the pixels of {path}: {err}; compressed DICOM needs a decoder "
                             "(pip install pylibjpeg pylibjpeg-libjpeg) or convert the series to NIfTI") from err
        if plane.shape != self.shape[1:]:
            raise InputError(f"{path.name} is {plane.shape}, the series' first slice {self.shape[1:]}; "
                             "give a folder holding one series")
        slope, intercept = float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0)
        return (plane * slope + intercept).astype(self.dtype)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.stack([self[i] for i in range(len(self))])
        return out if dtype is None else out.astype(dtype)


def _first(value) -> float:
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)


def _series(folder: Path) -> list[tuple[Path, object]]:
    headers = [(f, h) for f in _dicom_files(folder) if (h := _read_header(f)) is not None]
    if not headers:
        raise InputError(f"{folder} has no DICOM image files; give the folder of one DICOM series")
    by_series: dict[str, list] = {}
    for f, h in headers:
        by_series.setdefault(str(getattr(h, "SeriesInstanceUID", "")), []).append((f, h))
    return max(by_series.values(), key=len)


def _geometry(series: list[tuple[Path, object]]) -> tuple[list, np.ndarray, tuple[float, float, float]]:
    """Slices sorted along the normal (else by InstanceNumber), the RAS affine and the spacing (z, y, x)."""
    h0 = series[0][1]
    orient = np.asarray([float(v) for v in getattr(h0, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
    row_cos, col_cos = orient[:3], orient[3:]
    normal = np.cross(row_cos, col_cos)
    if all("ImagePositionPatient" in h for _, h in series):
        series = sorted(series, key=lambda fh: float(np.dot(normal, [float(v) for v in fh[1].ImagePositionPatient])))
        positions = np.asarray([[float(v) for v in h.ImagePositionPatient] for _, h in series])
    else:
        series = sorted(series, key=lambda fh: int(getattr(fh[1], "InstanceNumber", 0)))
        positions = None
    dy, dx = (float(v) for v in getattr(h0, "PixelSpacing", [1.0, 1.0]))
    if positions is not None and len(positions) > 1:
        step = (positions[-1] - positions[0]) / (len(positions) - 1)
        dz = float(np.linalg.norm(step))
    else:
        dz = float(getattr(h0, "SliceThickness", 1.0) or 1.0)
        step = normal * dz
    origin = positions[0] if positions is not None else np.zeros(3)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_cos * dx, col_cos * dy, step, origin
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's patient axes are LPS, NIfTI's RAS
    return series, ras, (dz, dy, dx)


def open_dicom(folder: str | os.PathLike, window=None) -> ImageSource:
    """A DICOM series (the largest in the folder) as a stack, sorted by position, rescaled to its units."""
    folder = Path(folder)
    series, affine, spacing = _geometry(_series(folder))
    h0 = series[0][1]
    slope, intercept = float(getattr(h0, "RescaleSlope", 1) or 1), float(getattr(h0, "RescaleIntercept", 0) or 0)
    whole = slope == int(slope) and intercept == int(intercept)
    stack = DicomStack([f for f, _ in series], int(h0.Rows), int(h0.Columns), np.int32 if whole else np.float32)
    meta = {"modality": str(getattr(h0, "Modality", "")), "series": str(getattr(h0, "SeriesInstanceUID", ""))}
    if "WindowCenter" in h0 and "WindowWidth" in h0:
        meta["file_window"] = (_first(h0.WindowCenter), _first(h0.WindowWidth))
    source = ImageSource(stack, folder, "dicom", [f.stem for f, _ in series], spacing=spacing, affine=affine,
                         meta=meta)
    return apply_window(source, window)
