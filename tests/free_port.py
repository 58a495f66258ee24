"""A TCP port for a torchrun job that no process listens on now, so jobs started side by side do not clash."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the operating system picked as free on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
