"""Write files so that a crash or a full disk never leaves a half-written file."""

from __future__ import annotations

import errno
import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "OutputError", "verify_safetensors"]


class OutputError(OSError):
    """A result could not be written; the previous file (if any) is unchanged."""


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[str], None],
    *,
    verify: Callable[[str], None] | None = None,
) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file over ``path``.

    The temp file lives in the destination folder (same filesystem, so the
    rename is atomic).  ``verify(tmp_path)``, when given, checks the written
    file before the rename and raises ``OSError`` (or ``ValueError``) if it is
    incomplete: some writers do not report a full disk.  On any failure the
    temp file is removed, the old ``path`` is untouched, and an
    :class:`OutputError` says what happened.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"cannot write {path}: {folder} {what}; choose an existing output folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputError(
            f"cannot write {path}: {err.strerror or err} (is folder {folder} writable?); "
            "choose another output folder"
        ) from err
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if verify is not None:
            try:
                verify(tmp)
            except ValueError as err:
                raise OSError(errno.EIO, f"the written file is incomplete ({err}); is the disk full?") from err
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(
            f"writing {path} failed ({err.strerror or err}); the previous file, if any, is unchanged. "
            "Free some disk space or choose another output folder."
        ) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def verify_safetensors(path: str | os.PathLike) -> None:
    """Check that a safetensors file is complete (header readable, size exact).

    Raises ``ValueError`` saying what is missing.  Reads only the header.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes, too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n + 8 > size:
            raise ValueError(f"header of {n} bytes but only {size - 8} bytes follow")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"unreadable header ({err})") from None
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    ends = [int(v["data_offsets"][1]) for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        raise ValueError(f"{size} bytes on disk, the header describes {expected}")
