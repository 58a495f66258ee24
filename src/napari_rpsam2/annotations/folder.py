"""The work folder of one image: its labels slice by slice, a journal of every write, and the image it belongs to.

Files (see ``docs/workfolder.md``)::

    <name>.rpsam2/
        meta.json         the image (path, shape, content signature), format and plugin version
        objects.jsonl     one JSON line per event (commit, propagation, one-shot, automatic, undo), fsynced
        labels/z00007.tif the label plane of every slice a write changed, as it was after the write
        prompts/          arrays an event refers to (mask prompts, one-shot reference labels)

Every file except the journal is written to a temporary name and renamed
into place; the journal is appended and fsynced.  A crash therefore loses at
most the event being written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from ..io.label_volume import new_label_volume
from .journal import append_event, read_events

__all__ = ["WorkFolder", "WorkFolderError", "Restored", "image_signature", "mask_digest", "plugin_version",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "napari-rpsam2 work folder"
FORMAT_VERSION = 1
_PLANE = re.compile(r"^(?:plane|z(\d+(?:_\d+)*))\.tif$")
_SAMPLED = 8
_WHOLE_BYTES = 64 << 20


class WorkFolderError(ValueError):
    """A work folder cannot be used; the message says why and what to do."""


def plugin_version() -> str:
    """The installed napari-rpsam2 version ("0.0.0" when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-rpsam2")
    except PackageNotFoundError:
        return "0.0.0"


def image_signature(image) -> str:
    """Content signature of an image: shape, dtype and its pixels.

    Images up to 64 MiB are hashed whole; larger ones by 8 evenly spaced
    slices of the first axis (enough to tell two images apart, without
    reading hours of video).
    """
    shape, dtype = tuple(np.shape(image)), getattr(image, "dtype", None)
    dtype = np.dtype(dtype if dtype is not None else np.asarray(image).dtype)  # never read a lazy stack whole
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{shape}|{dtype.str}".encode())
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize <= _WHOLE_BYTES or len(shape) < 3:
        h.update(np.ascontiguousarray(np.asarray(image)).tobytes())
    else:
        for i in sorted({int(round(v)) for v in np.linspace(0, shape[0] - 1, _SAMPLED)}):
            h.update(np.ascontiguousarray(np.asarray(image[i])).tobytes())
    return h.hexdigest()


def mask_digest(mask: np.ndarray) -> str:
    """Digest of a boolean mask (its shape and pixels): equal digests, equal masks."""
    arr = np.asarray(mask, dtype=bool)
    return hashlib.blake2b(np.packbits(arr).tobytes() + str(arr.shape).encode(), digest_size=16).hexdigest()


def _plane_name(index: tuple[int, ...]) -> str:
    return "plane.tif" if not index else "z" + "_".join(f"{int(i):05d}" for i in index) + ".tif"


def _disk_dtype(plane: np.ndarray) -> np.dtype:
    lo, hi = (int(plane.min()), int(plane.max())) if plane.size else (0, 0)
    if lo < 0:
        return np.dtype(np.int32)
    return np.dtype(np.uint16 if hi < 1 << 16 else np.uint32)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass
class Restored:
    """A work folder read back.

    Attributes
    ----------
    labels : ndarray
        The label volume (``meta.json``'s shape, int32; 0 where no write reached).
    events : list of dict
        The events still in effect (undone events and the undos removed), oldest first.
    objects : dict
        ``object id -> [events]``: the events in effect that wrote each object, with their prompts.
    skipped : int
        Journal lines that could not be read (a line torn by a crash).
    """

    labels: np.ndarray
    events: list[dict]
    objects: dict[int, list[dict]] = field(default_factory=dict)
    skipped: int = 0


class WorkFolder:
    """One image's work folder (use :meth:`create` or :meth:`open`)."""

    META, JOURNAL, LABELS, PROMPTS = "meta.json", "objects.jsonl", "labels", "prompts"

    def __init__(self, path: str | os.PathLike, meta: dict) -> None:
        self.path, self.meta = Path(path), meta
        self._seq = max((int(e.get("seq", 0)) for e in self.read_events()[0]), default=0)

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike, *, image_path: str | None, shape: Iterable[int], signature: str,
               extra: Mapping | None = None) -> WorkFolder:
        """Open the work folder at ``path``, making it when it does not exist yet.

        An existing folder must belong to the same image (shape and signature);
        otherwise :class:`WorkFolderError` says so.
        """
        path, shape = Path(path).expanduser(), [int(n) for n in shape]
        if (path / cls.META).exists():
            folder = cls.open(path)
            folder.check_image(shape, signature)
            return folder
        if path.exists() and not path.is_dir():
            raise WorkFolderError(f"work folder {path} is a file; choose another place for the work folder")
        if path.is_dir() and any(path.iterdir()):
            raise WorkFolderError(f"{path} is not empty and holds no {cls.META}; choose an empty or new folder")
        if not path.parent.is_dir():
            raise WorkFolderError(f"cannot make work folder {path}: folder {path.parent} does not exist")
        try:
            path.mkdir(exist_ok=True)
            (path / cls.LABELS).mkdir(exist_ok=True)
        except OSError as err:
            raise WorkFolderError(f"cannot make work folder {path} ({err.strerror or err}); is {path.parent} "
                                  "writable? Choose another place for the work folder") from None
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "image": image_path, "shape": shape,
                "image_signature": signature, "plugin_version": plugin_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **dict(extra or {})}
        atomic_write(path / cls.META, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1) + "\n"))
        _fsync_dir(path)
        _fsync_dir(path.parent)
        return cls(path, meta)

    @classmethod
    def open(cls, path: str | os.PathLike) -> WorkFolder:
        """An existing work folder; :class:`WorkFolderError` when ``path`` is not one."""
        path = Path(path).expanduser()
        meta_file = path / cls.META
        if not meta_file.is_file():
            what = "does not exist" if not path.exists() else f"holds no {cls.META}"
            raise WorkFolderError(f"{path} is not a work folder ({what}); give the <image>.rpsam2 folder")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise WorkFolderError(f"cannot read {meta_file} ({err}); the work folder is damaged") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or "shape" not in meta:
            raise WorkFolderError(f"{meta_file} is not the meta file of a napari-rpsam2 work folder")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise WorkFolderError(f"{path} was written by a newer napari-rpsam2 (format "
                                  f"{meta['format_version']}); update the plugin to read it")
        return cls(path, meta)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the label volume."""
        return tuple(int(n) for n in self.meta["shape"])

    def check_image(self, shape: Iterable[int], signature: str | None) -> None:
        """Raise :class:`WorkFolderError` when an image of ``shape``/``signature`` is not this folder's."""
        shape = tuple(int(n) for n in shape)
        if shape != self.shape:
            raise WorkFolderError(f"work folder {self.path} belongs to an image of shape {self.shape}, not "
                                  f"{shape}; choose another work folder")
        if signature is not None and signature != self.meta.get("image_signature"):
            raise WorkFolderError(f"work folder {self.path} belongs to another image (its pixels differ); "
                                  "choose another work folder")

    # ------------------------------------------------------------------ writing
    def write_planes(self, labels, indices: Iterable[tuple[int, ...]]) -> list[str]:
        """Save the current planes ``labels[index]`` (the labels after a write); returns their file names."""
        import tifffile

        names = []
        for index in sorted({tuple(int(i) for i in ix) for ix in indices}):
            plane = np.asarray(labels[index] if index else labels)
            plane = plane.astype(_disk_dtype(plane), copy=False)
            name = _plane_name(index)
            atomic_write(self.path / self.LABELS / name,
                         lambda tmp, p=plane: tifffile.imwrite(tmp, p, compression="zlib"))
            names.append(name)
        _fsync_dir(self.path / self.LABELS)
        return names

    def save_array(self, name: str, array: np.ndarray) -> str:
        """Save an array an event refers to (a mask prompt, a reference plane); returns its relative path."""
        import tifffile

        folder = self.path / self.PROMPTS
        folder.mkdir(exist_ok=True)
        arr = np.asarray(array)
        arr = arr.astype(np.uint8) if arr.dtype == bool else arr
        atomic_write(folder / f"{name}.tif", lambda tmp: tifffile.imwrite(tmp, arr, compression="zlib"))
        return f"{self.PROMPTS}/{name}.tif"

    def load_array(self, relative: str) -> np.ndarray:
        """An array saved by :meth:`save_array`."""
        import tifffile

        return tifffile.imread(self.path / relative)

    def record(self, kind: str, payload: Mapping, *, labels=None, slices: Iterable[tuple[int, ...]] = (),
               arrays: Mapping[str, np.ndarray] | None = None) -> dict:
        """Save the planes ``slices`` of ``labels``, the ``arrays``, then append one event; returns the event.

        ``arrays`` are saved under ``prompts/`` and named in the event's
        ``"arrays"`` entry (``name -> relative path``).
        """
        slices = [tuple(int(i) for i in ix) for ix in slices]
        self._seq += 1
        event = {"seq": self._seq, "kind": kind, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "plugin_version": plugin_version(), **dict(payload), "slices": [list(ix) for ix in slices]}
        if arrays:
            event["arrays"] = {name: self.save_array(f"e{self._seq:06d}-{name}", arr) for name, arr in arrays.items()}
        if labels is not None and slices:
            self.write_planes(labels, slices)
        append_event(self.path / self.JOURNAL, event)
        return event

    # ------------------------------------------------------------------ reading
    def read_events(self) -> tuple[list[dict], int]:
        """Every event of the journal (undone ones included) and the number of unreadable lines."""
        return read_events(self.path / self.JOURNAL)

    def read_labels(self) -> np.ndarray:
        """The label volume from ``labels/`` (int32; 0 on slices no write reached)."""
        import tifffile

        out = new_label_volume(self.shape, np.int32)  # chunked and compressed when large
        lead = len(self.shape) - 2
        folder = self.path / self.LABELS
        for file in sorted(folder.glob("*.tif")) if folder.is_dir() else ():
            match = _PLANE.match(file.name)
            if match is None:
                continue
            index = tuple(int(v) for v in match.group(1).split("_")) if match.group(1) else ()
            if len(index) != lead or any(not 0 <= i < n for i, n in zip(index, self.shape)):
                continue
            plane = tifffile.imread(file)
            if plane.shape != self.shape[lead:]:
                raise WorkFolderError(f"{file} has shape {plane.shape}, the work folder's slices "
                                      f"{self.shape[lead:]}; the work folder is damaged")
            out[index] = plane
        return out

    def live_events(self) -> tuple[list[dict], int]:
        """The events still in effect (undone events and undos left out) and the unreadable line count."""
        events, skipped = self.read_events()
        undone_by: dict[int, list[int]] = {}
        for e in events:
            if e.get("kind") == "undo" and "undoes" in e:
                undone_by.setdefault(int(e["undoes"]), []).append(int(e.get("seq", 0)))
        live: dict[int, bool] = {}

        def in_effect(seq: int) -> bool:  # an undo of an undo (a redo) puts the event back in effect
            if seq not in live:
                live[seq] = not any(in_effect(u) for u in undone_by.get(seq, ()) if u > seq)
            return live[seq]

        return [e for e in events if e.get("kind") != "undo" and in_effect(int(e.get("seq", 0)))], skipped

    def restore(self) -> Restored:
        """The labels and the events still in effect, with each object's events."""
        live, skipped = self.live_events()
        objects: dict[int, list[dict]] = {}
        for event in live:
            for oid in event.get("objects", ()):
                objects.setdefault(int(oid), []).append(event)
        return Restored(self.read_labels(), live, objects, skipped)
