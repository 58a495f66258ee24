"""Pieces of the ``rpsam2`` command line: argument checks, progress bars, Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

__all__ = ["UsageError", "Parser", "ProgressBars", "sigint_cancel", "existing_folder", "existing_file",
           "existing_path", "annotated_folders", "output_file", "output_folder", "cache_folder", "check_device",
           "make_model", "model_options", "merge_gap_option", "data_options", "run_job", "JobStopped", "window_option",
           "open_input", "IMAGES_HELP", "LABELS_HELP"]

IMAGES_HELP = ("images: a folder of PNG/JPEG/TIFF/BMP frames, a multi-page .tif, a .zarr, a video "
               "(.mp4/.avi/.mov/.mkv), a .nii/.nii.gz volume or a DICOM folder")
LABELS_HELP = ("labels: a folder of label images (same names as the frames), a .tif stack, a .nii.gz or a .zarr "
               "of the images' shape")


T = TypeVar("T")


class UsageError(ValueError):
    """Bad command-line input; the message says what to change."""


class Parser(argparse.ArgumentParser):
    """argparse that reports bad options as a one-line :class:`UsageError`."""

    def error(self, message: str) -> None:  # one line, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


def existing_folder(path: str, what: str) -> Path:
    """``path`` as a folder that exists, else a :class:`UsageError` naming ``what``."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise UsageError(f"{what} folder {p} does not exist" if not p.exists() else f"{what} {p} is not a folder")
    return p


def annotated_folders(args: argparse.Namespace) -> tuple[Path, Path]:
    """``--images`` and ``--labels`` as existing folders, ``--class-map`` (when given) as an existing file.

    The checks the commands that learn from annotated folders (``autoseg train``, ``autoseg evaluate``,
    ``finetune``) make before any work; returns ``(images, labels)``.
    """
    images = existing_folder(args.images, "images")
    labels = existing_folder(args.labels, "labels")
    if getattr(args, "class_map", None) is not None:
        existing_file(args.class_map, "class map")
    return images, labels


def existing_path(path: str, what: str) -> Path:
    """``path`` as a file or folder that exists, else a :class:`UsageError` naming ``what``."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"{what} {p} does not exist")
    return p


def existing_file(path: str, what: str) -> Path:
    """``path`` as a file that exists, else a :class:`UsageError` naming ``what``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"{what} file {p} does not exist" if not p.exists() else f"{what} {p} is not a file")
    return p


def _writable(folder: Path, what: str) -> None:
    """A :class:`UsageError` unless a file can be created in ``folder`` (tried at once, not after the run)."""
    from .._atomic import OutputError, check_writable

    try:
        check_writable(folder, what)
    except OutputError as err:
        raise UsageError(str(err)) from None


def output_file(path: str, suffix: str, what: str = "output") -> Path:
    """An output path ending in ``suffix`` whose folder exists and can be written."""
    p = Path(path).expanduser()
    if p.suffix.lower() != suffix:
        raise UsageError(f"{what} {p} should end in {suffix}")
    if p.is_dir():
        raise UsageError(f"{what} {p} is a folder; give a file name ending in {suffix}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{what} folder {parent} does not exist; create it first")
    _writable(parent, what)
    return p


def output_folder(path: str, overwrite: bool, option: str = "--out") -> Path:
    """An output folder a run may fill: missing or empty, or non-empty with ``--overwrite``; parent writable."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {p} is a file; give a folder")
    if p.is_dir() and not overwrite and any(p.iterdir()):
        raise UsageError(f"{option} {p} already holds files (an earlier run?); give a new folder, or add "
                         "--overwrite to replace it with this run's outputs")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {p}: folder {parent} does not exist; create it first")
    _writable(parent, option)
    return p


def cache_folder(path: str | None, option: str = "--cache") -> Path | None:
    """An embedding-cache folder: created when missing (its parent must exist), and writable."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {p} is a file, not a folder")
    if not p.exists():
        if not p.parent.is_dir():
            raise UsageError(f"{option} {p}: folder {p.parent} does not exist; create it first")
        _writable(p.parent, option)
        p.mkdir(exist_ok=True)  # torchrun: every process checks
    _writable(p, option)
    return p


def check_device(device: str) -> str:
    """``device`` if this machine has it (auto, cpu, cuda, cuda:N, mps), else a one-line :class:`UsageError`."""
    from ..model import WeightsError, pick_device

    try:
        pick_device(device)
    except WeightsError as err:
        raise UsageError(f"--device: {err}") from None
    return device


class ProgressBars:
    """tqdm bars for ``progress(done, total)`` or ``progress(stage, done, total)`` callbacks."""

    def __init__(self, quiet: bool, default: str = "") -> None:
        self.quiet, self.default, self.bars = quiet, default, {}

    def __call__(self, *args) -> None:
        stage, (done, total) = (args[0] if len(args) == 3 else self.default), args[-2:]
        from tqdm.auto import tqdm

        bar = self.bars.get(stage)
        if bar is None or bar.total != total or done < bar.n:
            if bar is not None:
                bar.close()
            bar = self.bars[stage] = tqdm(total=total, desc=stage, disable=True if self.quiet else None,
                                          file=sys.stderr, leave=False, dynamic_ncols=True)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


@contextlib.contextmanager
def sigint_cancel() -> Iterator[Callable[[], bool]]:
    """First Ctrl-C asks the running job to stop cleanly; a second one aborts at once."""
    presses = [0]

    def handler(signum, frame) -> None:
        presses[0] += 1
        if presses[0] > 1:
            raise KeyboardInterrupt
        print("rpsam2: stopping after this step (Ctrl-C again to abort now)", file=sys.stderr)

    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no signal handling
        old = None
    try:
        yield lambda: presses[0] > 0
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def model_options(sp: argparse.ArgumentParser) -> None:
    """The model options every subcommand takes."""
    sp.add_argument("--backbone", default="sam2.1_hiera_tiny", help="SAM2 size (default %(default)s)")
    sp.add_argument("--sam2-weights", default=None,
                    help="'random', a local .pt/.safetensors file, or a Hugging Face id "
                         "(default: the backbone's facebook/sam2.1-hiera-* id)")
    sp.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    sp.add_argument("--adapters", default=None, metavar="FILE",
                    help="SAM2 adapters fine-tuned for this backbone ('rpsam2 finetune'), loaded next to the weights")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")


def merge_gap_option(sp: argparse.ArgumentParser) -> None:
    """``--merge-gap`` (default None: the readers' 12 px)."""
    sp.add_argument("--merge-gap", type=float, default=None, metavar="PX",
                    help="binary labels: regions at most PX pixels apart are one object (default 12: "
                         "joins the prongs of one forceps; 0: every region is an object); "
                         "instance labels are kept as they are")


def make_model(args: argparse.Namespace, base=None, cache_dir: Path | None = None, *, own_backbone: bool = False):
    """Load the model from the options; ``base`` (tests) lends its backbone and cache.

    ``own_backbone``: the caller will change SAM2 (adapters), so a lent backbone is copied.
    """
    import torch

    from ..model import RPSAM2, EmbeddingCache
    from ..model.weights import resolve_backbone

    shift_block = getattr(args, "shift_block", None)
    if shift_block is not None:
        existing_file(shift_block, "shift-block checkpoint")
    adapters = getattr(args, "adapters", None)
    if adapters is not None:
        existing_file(adapters, "SAM2 adapter")
    if base is None:
        weights = args.sam2_weights or resolve_backbone(args.backbone).hf_id
        return RPSAM2.load(args.backbone, weights, shift_block=shift_block, device=args.device,
                           seed=0, cache_dir=cache_dir, adapters=adapters)
    cache = base.cache if cache_dir is None else EmbeddingCache(base.cache.max_bytes, cache_dir)
    backbone = base.backbone if adapters is None and not own_backbone else _own_backbone(base.backbone)
    if adapters is not None:
        backbone.load_adapters(adapters)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = RPSAM2(backbone, cache=cache)
    if shift_block is not None:
        model.load_shift_block(shift_block)
    return model


def window_option(sp: argparse.ArgumentParser) -> None:
    """``--window``: the intensity window of volumes (CT preset or level,width)."""
    from ..io import WINDOWS

    sp.add_argument("--window", default=None, metavar="PRESET|LEVEL,WIDTH",
                    help=f"intensity window for volumes: {', '.join(WINDOWS)}, or level,width such as 40,400 "
                         "(default: the DICOM file's window, soft tissue for CT-like data, else the stack's range)")


def open_input(path: str, window: str | None = None, what: str = "images"):
    """Open ``--images`` (any supported input, lazily) or give a one-line :class:`UsageError`."""
    from ..io import InputError, open_images

    try:
        return open_images(path, window=window, role=what)
    except InputError as err:
        raise UsageError(str(err)) from None


def _own_backbone(shared):
    """A copy of a lent backbone (tests) that adapters may be hooked onto without touching the original."""
    import copy

    from ..model.backbone import SAM2Backbone

    return SAM2Backbone(copy.deepcopy(shared.model), shared.spec, shared._plain_signature)


def data_options(sp: argparse.ArgumentParser) -> None:
    """``--images``/``--labels``, class map, cache, window and merge gap."""
    sp.add_argument("--images", required=True, help=IMAGES_HELP)
    sp.add_argument("--labels", required=True, help=LABELS_HELP)
    window_option(sp)
    sp.add_argument("--class-map", default=None, help="JSON file {\"object id\": \"class name\"}")
    sp.add_argument("--cache", default=None, help="embedding cache folder (see 'rpsam2 embed')")
    merge_gap_option(sp)


class JobStopped(Exception):
    """Ctrl-C stopped a job before it wrote anything; ``rpsam2`` exits with status 130."""


def run_job(job: Callable[[Callable, Callable[[], bool]], T], *, quiet: bool, stage: str, what: str) -> T:
    """``job(progress, cancel)`` with progress bars on stderr and Ctrl-C as its cancel flag.

    Raises :class:`JobStopped` ("<what> cancelled; nothing written") when the
    job stopped on a Ctrl-C (it raised :class:`napari_rpsam2.jobs.Cancelled`).
    """
    from ..jobs import Cancelled

    bars = ProgressBars(quiet, stage)
    with sigint_cancel() as cancel:
        try:
            return job(bars, cancel)
        except Cancelled:
            raise JobStopped(f"{what} cancelled; nothing written") from None
        finally:
            bars.close()
