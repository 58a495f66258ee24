"""An append-only journal of JSON lines that survives a crash (kill -9, power loss) at any moment.

Each event is one line, written with one ``write`` and made durable with
``fsync`` before the call returns.  A line cut short by a crash (the last
one, without its newline) is ignored on reading, and the next append starts
on a fresh line so it never joins a torn fragment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["append_event", "read_events"]


def append_event(path: str | os.PathLike, event: dict) -> None:
    """Append ``event`` as one JSON line and fsync it (the file gets the mode the umask gives)."""
    line = (json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line from a crash: start a new one
            line = b"\n" + line
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_events(path: str | os.PathLike) -> tuple[list[dict], int]:
    """The events of a journal, oldest first, and how many unreadable lines were skipped.

    A missing file has no events.  A torn or corrupt line is skipped (counted);
    the lines around it are read.
    """
    path = Path(path)
    if not path.exists():
        return [], 0
    events, skipped = [], 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                skipped += 1
                continue
            if isinstance(event, dict):
                events.append(event)
            else:
                skipped += 1
    return events, skipped
