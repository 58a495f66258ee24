"""Open any supported path as an image stack or a label stack (the one entry point of the front ends)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .arrays import is_zarr, open_tiff, open_zarr
from .contrast import stack_limits
from .frames import FRAME_SUFFIXES, open_frames, read_frame
from .source import ImageSource, InputError
from .video import VIDEO_SUFFIXES, open_video
from .volumes import apply_window, is_dicom_folder, is_nifti, open_dicom, open_nifti

__all__ = ["open_images", "open_labels", "read_label_plane", "label_plane", "with_contrast", "INPUTS"]

INPUTS = ("a folder of PNG/JPEG/TIFF/BMP frames, a multi-page .tif, a .zarr, a video (.mp4/.avi/.mov/.mkv), "
          "a .nii/.nii.gz volume or a DICOM folder")


def _kind(p: Path) -> str:
    if p.is_dir():
        if is_zarr(p):
            return "zarr"
        if is_dicom_folder(p):
            return "dicom"
        return "frames"
    if is_nifti(p):
        return "nifti"
    suffix = p.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return "tiff"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix == ".dcm":
        return "dicom-file"
    if suffix in FRAME_SUFFIXES:
        return "image"
    raise InputError(f"{p} is not a supported input ({suffix or 'no extension'}); give {INPUTS}")


def open_images(path: str | os.PathLike, *, window=None, role: str = "images") -> ImageSource:
    """Open ``path`` as a lazy image stack with its one contrast rule.

    ``window`` (a CT preset name or ``"level,width"``) sets the contrast limits
    of volumes (and of any stack when given); without it volumes use their own
    window (see :func:`~napari_rpsam2.io.volumes.apply_window`) and other
    stacks their dtype's or sampled range (:func:`~napari_rpsam2.io.contrast.stack_limits`).
    Raises :class:`InputError` with one line saying what is wrong.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{role} {p} does not exist; give {INPUTS}")
    kind = _kind(p)
    if kind == "dicom-file":
        p, kind = p.parent, "dicom"
    if kind == "image":
        plane = read_frame(p)
        from .frames import FolderStack

        source = ImageSource(FolderStack([p]), p, "frames", [p.stem], rgb=plane.ndim == 3 and plane.shape[-1] >= 3,
                             meta={"suffixes": [p.suffix.lower()]})
    elif kind == "nifti":
        return open_nifti(p, window)
    elif kind == "dicom":
        return open_dicom(p, window)
    else:
        source = {"frames": lambda: open_frames(p, role), "tiff": lambda: open_tiff(p), "zarr": lambda: open_zarr(p),
                  "video": lambda: open_video(p)}[kind]()
    return with_contrast(source, window)


def with_contrast(source: ImageSource, window=None) -> ImageSource:
    """Fill in the stack's contrast limits (a given window wins; else the dtype's or sampled range)."""
    if window is not None:
        return apply_window(source, window)
    if source.contrast_limits is None:
        source.contrast_limits, sampled = stack_limits(source.data)
        if sampled:
            source.meta["sampled_slices"] = sampled
    return source


def label_plane(arr: np.ndarray, where: str) -> np.ndarray:
    """A label slice as ``(H, W)``: RGB with three equal channels → one channel; a clear error otherwise."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(f"label file {where} is a colour image with differing channels; labels must be "
                             "one id per pixel (grey, or RGB with three equal channels)")
        return rgb[..., 0]
    if arr.ndim != 2:
        raise InputError(f"label file {where} has shape {arr.shape}; expected a 2D (H, W) label image")
    return arr


def read_label_plane(path: str | os.PathLike) -> np.ndarray:
    """One label image file as ``(H, W)``."""
    return label_plane(read_frame(path), str(path))


def open_labels(path: str | os.PathLike, like: ImageSource | None = None) -> tuple[np.ndarray, list[str] | None]:
    """A label stack ``(N, H, W)`` (read whole: labels are small) and its slice names (``None`` if unnamed).

    Accepts a folder of label images, a (multi-page) TIFF, a NIfTI volume or a zarr array.  With ``like``,
    the shape must match that image stack's ``(N, H, W)``.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"labels {p} does not exist; give a folder of label images, a .tif stack, a .nii.gz "
                         "or a .zarr")
    kind = _kind(p)
    if kind in ("video", "dicom", "dicom-file"):
        raise InputError(f"labels {p}: a {kind.split('-')[0]} cannot hold labels; give a folder of label images, "
                         "a .tif stack, a .nii.gz or a .zarr")
    names = None
    if kind in ("frames", "image"):
        from .frames import list_frames

        files = {p.stem: p} if kind == "image" else list_frames(p, "labels")
        planes = [read_label_plane(f) for f in files.values()]
        if len({a.shape for a in planes}) > 1:
            raise InputError(f"label images in {p} differ in size; they must all match their images")
        labels, names = np.stack(planes), list(files)
    else:
        source = {"tiff": open_tiff, "zarr": open_zarr, "nifti": open_nifti}[kind](p)
        labels = np.asarray(source.data)
        if source.rgb:
            labels = np.stack([label_plane(a, f"{p} slice {i}") for i, a in enumerate(labels)])
    if like is not None and tuple(labels.shape) != tuple(like.shape[:3]):
        raise InputError(f"labels {p} have shape {tuple(labels.shape)} but the images {like.path} are "
                         f"{tuple(like.shape[:3])} (slices, height, width); pick the labels of these images")
    return labels, names
