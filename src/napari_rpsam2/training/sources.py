"""Annotated stacks from any supported images and labels (video, TIFF, zarr, NIfTI, DICOM, folders).

Two folders of frames are paired by file stem (:func:`~napari_rpsam2.training.data.stack_from_folders`).
Otherwise the images are opened with :func:`napari_rpsam2.io.open_images` and the labels with
:func:`napari_rpsam2.io.open_labels`: a label folder whose file stems name slices of the images
(``frame_000120.png`` for a video) labels just those slices; any other labels must have the images'
shape ``(N, H, W)``.  Only slices with an object are read from the images, so a long video with a
few annotated frames is never decoded whole.  The stack keeps the images' one contrast rule.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .components import DEFAULT_MERGE_GAP
from .data import AnnotatedStack, DataError, _read_class_map, stack_from_arrays, stack_from_folders

__all__ = ["stack_from_paths"]


def _plain_folder(path: Path) -> bool:
    from ..io.arrays import is_zarr
    from ..io.volumes import is_dicom_folder

    return path.is_dir() and not is_zarr(path) and not is_dicom_folder(path)


def _paired_labels(source, labels_path: Path) -> tuple[list[int], np.ndarray]:
    """Slice indices of the images and their label planes (by name for a label folder, else by shape)."""
    from ..io import open_labels

    labels, names = open_labels(labels_path)
    if names is not None:
        index = {n: i for i, n in enumerate(source.names)}
        if all(n in index for n in names):
            order = [index[n] for n in names]
            if any(lab.shape != source.slice_shape for lab in labels):
                raise DataError(f"label images in {labels_path} are {labels.shape[1:]} but the images "
                                f"{source.path} are {source.slice_shape}; they must match")
            return order, labels
    if tuple(labels.shape) != tuple(source.shape[:3]):
        raise DataError(f"labels {labels_path} have shape {tuple(labels.shape)} but the images {source.path} are "
                        f"{tuple(source.shape[:3])} (slices, height, width); name label files after the slices "
                        f"({', '.join(source.names[:2])}, …) or give labels for every slice")
    return list(range(len(labels))), labels


def stack_from_paths(images: str | os.PathLike, labels: str | os.PathLike, *,
                     class_map: Mapping | str | os.PathLike | None = None, merge_gap: float = DEFAULT_MERGE_GAP,
                     window=None) -> AnnotatedStack:
    """An :class:`AnnotatedStack` from any image input and its labels (see the module).

    ``window`` (CT preset or ``"level,width"``) sets the contrast limits of volumes.
    Raises :class:`DataError` with one line saying what is wrong.
    """
    from ..io import InputError, open_images, parse_window, window_limits

    img_p, lab_p = Path(images).expanduser(), Path(labels).expanduser()
    try:
        if _plain_folder(img_p) and _plain_folder(lab_p):
            stack = stack_from_folders(img_p, lab_p, class_map=class_map, merge_gap=merge_gap)
            if window is not None:
                stack.contrast_limits = window_limits(*parse_window(window)[1:])
            return stack
        source = open_images(img_p, window=window)
        slices, planes = _paired_labels(source, lab_p)
    except InputError as err:
        raise DataError(str(err)) from err
    keep = [k for k, plane in enumerate(planes) if np.any(plane)]
    if not keep:
        raise DataError(f"the labels in {lab_p} have no objects (all pixels are 0)")
    pics = np.stack([np.asarray(source.data[slices[k]]) for k in keep])
    return stack_from_arrays(pics, np.stack([planes[k] for k in keep]), class_names=_read_class_map(class_map),
                             rgb=source.rgb, contrast_limits=source.contrast_limits,
                             names=[source.names[slices[k]] for k in keep], merge_gap=merge_gap)
