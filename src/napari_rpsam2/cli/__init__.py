"""The ``rpsam2`` command line: a front end over the application layer (``napari_rpsam2.app``).

``main`` parses the arguments and maps the library's errors to exit status 2 with one line on stderr;
each subcommand lives in the module named after what it does.
"""

from .main import build_parser, main
from .support import UsageError

__all__ = ["main", "build_parser", "UsageError"]
