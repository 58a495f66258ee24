"""Write files so that a crash or a full disk never leaves a half-written file or a mixed folder.

Files and folders get the permissions the process's umask gives (``0644`` and
``0755`` under the usual umask ``022``), like files written with ``open``; a
replaced file keeps the permissions it had.  :func:`atomic_folder` builds a
run's outputs in a fresh hidden folder beside the destination and renames it
into place, so an output folder never mixes two runs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_write", "atomic_folder", "check_writable", "check_output_folder", "umask_mode",
           "OutputError", "verify_safetensors"]

_UMASK_LOCK = threading.Lock()


class OutputError(OSError):
    """A result could not be written; the previous file (if any) is unchanged."""


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore at once
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def umask_mode(folder: bool = False) -> int:
    """The mode a new file (``0o666``) or folder (``0o777``) gets under the current umask."""
    return (0o777 if folder else 0o666) & ~_umask()


def check_writable(folder: str | os.PathLike, what: str = "output") -> Path:
    """Raise :class:`OutputError` unless a file can be created in ``folder`` (tried, then removed).

    Cheap (one empty file); call it before a long computation so that a
    read-only or missing location is found at once.
    """
    folder = Path(folder) if str(folder) else Path(".")
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"{what} folder {folder} {state}; choose an existing folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".rpsam2-write-test.", suffix=".tmp")
    except OSError as err:
        raise OutputError(f"cannot write to {what} folder {folder} ({err.strerror or err}); "
                          "choose a folder you can write to") from err
    os.close(fd)
    os.unlink(probe)
    return folder


def _is_empty_folder(path: Path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


def check_output_folder(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output") -> Path:
    """Check that a run may write the folder ``path`` (see :func:`atomic_folder`), before it starts.

    The parent folder must exist and be writable; ``path`` may be missing or
    an empty folder; a non-empty folder only with ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file; give a folder")
    if path.is_dir() and not overwrite and not _is_empty_folder(path):
        raise OutputError(f"{what} folder {path} already holds files (an earlier run?); choose a new or "
                          "empty folder, or allow overwriting it (its old files are then removed)")
    check_writable(path.parent, what)
    return path


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``path``; on success it replaces ``path`` as a whole.

    On an exception the fresh folder is removed and ``path`` is untouched.
    With ``overwrite`` an existing ``path`` is replaced (its files removed);
    without it, a non-empty ``path`` raises :class:`OutputError`.
    """
    path = check_output_folder(path, overwrite=overwrite)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp"))
        os.chmod(tmp, umask_mode(folder=True))
    except OSError as err:
        raise OutputError(f"cannot create a folder in {parent} ({err.strerror or err}); "
                          "choose another output folder") from err
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as err:
        raise OutputError(f"writing folder {path} failed ({err.strerror or err}); the previous folder, if any, "
                          "is unchanged. Free some disk space or choose another output folder.") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
        try:  # mkstemp made it 0600: give what the umask gives, or keep the replaced file's mode
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = umask_mode()
        os.chmod(tmp, mode)
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
