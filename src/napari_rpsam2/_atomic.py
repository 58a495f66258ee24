"""Write files so that a crash or a full disk never leaves a half-written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "OutputError"]


class OutputError(OSError):
    """A result could not be written; the previous file (if any) is unchanged."""


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file over ``path``.

    The temp file lives in the destination folder (same filesystem, so the
    rename is atomic).  On any failure the temp file is removed, the old
    ``path`` is untouched, and an :class:`OutputError` says what happened.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: folder {folder} does not exist")
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
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(
            f"writing {path} failed ({err.strerror or err}); the previous file, if any, is unchanged"
        ) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
