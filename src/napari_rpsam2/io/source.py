"""What every reader returns: a lazy stack of slices and what is known about it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["InputError", "ImageSource", "natural_key", "plane_kind"]


class InputError(ValueError):
    """A file or folder that cannot be read as images or labels; the message says what to do."""


def natural_key(name: str) -> tuple:
    """Sort key that orders ``2.png`` before ``10.png`` (digits compare as numbers)."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "")


@dataclass
class ImageSource:
    """A stack of slices opened from disk.

    Attributes
    ----------
    data : sequence-like (N, H, W[, 3])
        ``len(data)``, ``data[i]`` (one slice, read on demand), ``shape``, ``dtype`` and ``ndim``.
    path : Path
        What was opened.
    kind : str
        ``"frames"``, ``"tiff"``, ``"zarr"``, ``"video"``, ``"nifti"`` or ``"dicom"``.
    names : list of str
        One name per slice, used to name per-slice outputs (file stems, ``frame_000123``, ``<stem>_0007``).
    rgb : bool
        Whether slices have a colour axis.
    spacing : tuple of float or None
        Size of a voxel along (slice, row, column), in the file's units (mm for volumes).
    affine : array (4, 4) or None
        Voxel (column, row, slice) to world (RAS, mm) of a volume; NIfTI outputs reuse it.
    contrast_limits : (float, float) or None
        The one display mapping for the whole stack (a volume's window); ``None``: computed by
        :func:`napari_rpsam2.io.contrast.stack_limits`.
    meta : dict
        Anything else worth keeping in outputs (frame rate, window name, …).
    """

    data: Any
    path: Path
    kind: str
    names: list[str]
    rgb: bool = False
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    contrast_limits: tuple[float, float] | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the whole stack ``(N, H, W[, 3])``."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def slice_shape(self) -> tuple[int, int]:
        """``(H, W)`` of one slice."""
        return self.shape[1], self.shape[2]

    @property
    def is_volume(self) -> bool:
        """A medical volume (NIfTI or DICOM) with an affine."""
        return self.affine is not None


def plane_kind(arr: np.ndarray, where: str) -> np.ndarray:
    """One image slice as ``(H, W)`` or ``(H, W, 3)``: alpha dropped, a single channel squeezed."""
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise InputError(f"image {where} has shape {arr.shape}; expected (H, W) or (H, W, 3)")
    return arr


def path_label(path: Path) -> str:
    """A file name without its (double) extension: ``ct.nii.gz`` → ``ct``."""
    name = path.name
    for suffix in (".nii.gz", ".ome.zarr", ".ome.tif", ".ome.tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem
