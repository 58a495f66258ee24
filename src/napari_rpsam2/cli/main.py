"""The ``rpsam2`` command: its parser, and how errors become exit codes.

Every subcommand calls the same library functions as the napari widgets.
Bad input ends with exit status 2 and one line on stderr,
``rpsam2: error: <what is wrong and what to do>``; Ctrl-C ends with status 130
(``train`` first finishes its step and keeps the last good checkpoint).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from .support import JobStopped, Parser, UsageError, model_options

__all__ = ["main", "build_parser", "UsageError"]

_PKG_DIR = str(Path(__file__).resolve().parent.parent)  # the napari_rpsam2 package


def build_parser() -> argparse.ArgumentParser:
    """The ``rpsam2`` argument parser."""
    from .autoseg import add_parser as add_autoseg_parser
    from .embed import add_embed, add_info
    from .finetune import add_parser as add_finetune_parser
    from .measure import add_evaluate, add_heatmap
    from .oneshot import add_parser as add_oneshot_parsers  # oneshot, oneshot-eval
    from .propagate import add_parser as add_propagate_parser
    from .train import add_parser as add_train_parser

    p = Parser(prog="rpsam2", description="RP-SAM2: stable SAM2 point prompts (embed, train, evaluate, heatmap, "
               "propagate, oneshot, autoseg, finetune).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_info(sub)
    add_embed(sub)
    add_train_parser(sub)
    add_evaluate(sub)
    add_heatmap(sub)
    add_propagate_parser(sub, model_options)
    add_oneshot_parsers(sub, model_options)
    add_autoseg_parser(sub)
    add_finetune_parser(sub)
    return p


def _is_user_error(err: BaseException) -> bool:
    from .._atomic import OutputError
    from ..model import CheckpointError, ImageError, PromptError, WeightsError

    if isinstance(err, (UsageError, CheckpointError, ImageError, PromptError, WeightsError, OutputError)):
        return True
    try:
        from ..training.data import DataError

        if isinstance(err, DataError):
            return True
    except ImportError:
        pass
    if isinstance(err, ValueError):  # only the library's own checks, not bugs elsewhere
        frames = traceback.extract_tb(err.__traceback__)
        return bool(frames) and frames[-1].filename.startswith(_PKG_DIR)
    return False


def main(argv: Sequence[str] | None = None, *, model=None) -> int:
    """Run ``rpsam2``; returns the exit status.

    ``model`` (an :class:`RPSAM2`) lends its backbone and embedding cache
    instead of loading one; tests use it to share one model.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help
        return int(stop.code or 0)
    except UsageError as err:
        print(f"rpsam2: error: {err}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, model))
    except JobStopped as stopped:
        print(f"rpsam2: {stopped}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("rpsam2: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not _is_user_error(err):
            raise
        print(f"rpsam2: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
