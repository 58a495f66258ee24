"""Folders of frames (PNG, JPEG, TIFF, BMP), one image per slice, read lazily in natural order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .source import ImageSource, InputError, natural_key, plane_kind

__all__ = ["FRAME_SUFFIXES", "list_frames", "read_frame", "FolderStack", "open_frames"]

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def list_frames(folder: str | os.PathLike, role: str = "images") -> dict[str, Path]:
    """``stem -> file`` for the image files of a folder, in natural order (``2.png`` before ``10.png``).

    Raises :class:`InputError` when the folder is missing, has no image file, or has two files with one stem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{role} folder {folder} does not exist or is not a folder")
    files: dict[str, Path] = {}
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES
             and not p.name.startswith(".")]
    for p in sorted(found, key=lambda p: natural_key(p.name)):
        if p.stem in files:
            raise InputError(f"{role} folder {folder} has two files named {p.stem} "
                             f"({files[p.stem].name}, {p.name}); keep one")
        files[p.stem] = p
    if not files:
        raise InputError(f"{role} folder {folder} has no PNG, JPEG, TIFF or BMP files")
    return files


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """One image file as it is stored (16-bit PNGs stay 16-bit); :class:`InputError` if unreadable."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
            return np.asarray(im)
    except Exception as err:  # unreadable, truncated, not an image
        raise InputError(f"cannot read {path}: {err}; check that it is a valid PNG, JPEG, TIFF or BMP file") from err


class FolderStack:
    """The image files of a folder as a lazy ``(N, H, W[, 3])`` stack: a slice is read when indexed."""

    def __init__(self, files: list[Path]) -> None:
        self.files = list(files)
        first = plane_kind(read_frame(self.files[0]), str(self.files[0]))
        self.shape = (len(self.files), *first.shape)
        self.dtype, self.ndim = first.dtype, first.ndim + 1

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, (int, np.integer)):
            return np.stack([self[i] for i in range(len(self))[index]]) if isinstance(index, slice) else \
                np.asarray(self)[index]
        i = int(index)
        plane = self.read(i)
        if plane.shape != self.shape[1:]:
            raise InputError(f"{self.files[i].name} has shape {plane.shape}, the first image "
                             f"{self.shape[1:]}; all images of a stack must have one size")
        return plane.astype(self.dtype, copy=False)

    def read(self, index: int) -> np.ndarray:
        """Slice ``index`` as it is stored, whatever its size."""
        return plane_kind(read_frame(self.files[int(index)]), str(self.files[int(index)]))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.stack([self[i] for i in range(len(self))])
        return out if dtype is None else out.astype(dtype)


def open_frames(folder: str | os.PathLike, role: str = "images") -> ImageSource:
    """A folder of frames as an :class:`ImageSource` (slice names: the file stems)."""
    files = list_frames(folder, role)
    stack = FolderStack(list(files.values()))
    return ImageSource(stack, Path(folder), "frames", list(files), rgb=stack.ndim == 4,
                       meta={"suffixes": sorted({p.suffix.lower() for p in files.values()})})
