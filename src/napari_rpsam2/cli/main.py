"""The ``rpsam2`` command: its parser, and how errors become exit codes.

Every subcommand calls the same library functions as the napari widgets.
Bad input ends with exit status 2 and one line on stderr,
``rpsam2: error: <what is wrong and what to do>``; Ctrl-C ends with status 130
(``train`` first finishes its step and keeps the last good checkpoint).
Warnings are one line each (``rpsam2: warning: …``), each message once; the
third-party warnings listed in :data:`QUIET_WARNINGS` say nothing a user can act on and are not shown.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from .support import JobStopped, Parser, UsageError, check_device, model_options

__all__ = ["main", "build_parser", "UsageError", "QUIET_WARNINGS", "version_text"]

_PKG_DIR = str(Path(__file__).resolve().parent.parent)  # the napari_rpsam2 package

QUIET_WARNINGS: tuple[tuple[str, str], ...] = (
    # (message regex, why hidden).  SAM2 without its compiled CUDA extension skips filling small holes
    # in masks; SAM2 says itself that it is fine to ignore, and nothing can be done short of a rebuild.
    (r"(?s).*Skipping the post-processing step due to the error above", "SAM2 '_C' extension missing"),
    # MONAI (Med-PerSAM's warping model): an implementation note and a PyTorch deprecation inside MONAI.
    (r"monai\.networks\.blocks\.Warp: Using PyTorch native grid_sample", "MONAI implementation note"),
    (r"Using a non-tuple sequence for multidimensional indexing is deprecated", "PyTorch deprecation in MONAI"),
)


def version_text() -> str:
    """``rpsam2 <version> (sam2 <version>, torch <version>)``."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    parts = []
    for dist in ("sam2", "torch"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return f"rpsam2 {__version__} ({', '.join(parts)})"


def build_parser() -> argparse.ArgumentParser:
    """The ``rpsam2`` argument parser."""
    from .autoseg import add_parser as add_autoseg_parser
    from .embed import add_embed, add_info
    from .finetune import add_parser as add_finetune_parser
    from .measure import add_evaluate, add_heatmap
    from .oneshot import add_parser as add_oneshot_parsers  # oneshot, oneshot-eval
    from .propagate import add_parser as add_propagate_parser
    from .train import add_parser as add_train_parser
    from .workfolder import add_parsers as add_workfolder_parsers

    p = Parser(prog="rpsam2", description="RP-SAM2: stable SAM2 point prompts (embed, train, evaluate, heatmap, "
               "propagate, oneshot, rerun, export, autoseg, finetune).")
    p.add_argument("--version", action="version", version=version_text())
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_info(sub)
    add_embed(sub)
    add_train_parser(sub)
    add_evaluate(sub)
    add_heatmap(sub)
    add_propagate_parser(sub, model_options)
    add_oneshot_parsers(sub, model_options)
    add_workfolder_parsers(sub, model_options)  # rerun, export
    add_autoseg_parser(sub)
    add_finetune_parser(sub)
    return p


def _is_user_error(err: BaseException) -> bool:
    from .._atomic import OutputError
    from ..io import InputError
    from ..model import CheckpointError, ImageError, PromptError, WeightsError

    if isinstance(err, (UsageError, CheckpointError, ImageError, PromptError, WeightsError, OutputError, InputError)):
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
    with warnings.catch_warnings():
        _quiet_warnings()
        return _run(args, model)


def _quiet_warnings() -> None:
    """Each warning once, on one line; :data:`QUIET_WARNINGS` not at all."""
    warnings.simplefilter("always")  # "once" forgets what it showed whenever a library adds a filter
    for pattern, _why in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        from tqdm.auto import tqdm  # above any progress bar, which is redrawn below it

        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            tqdm.write(f"rpsam2: warning: {text}", file=sys.stderr if file is None else file)

    warnings.showwarning = show  # restored when catch_warnings ends


def _run(args: argparse.Namespace, model) -> int:
    try:
        if getattr(args, "device", None) is not None:
            check_device(args.device)
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
