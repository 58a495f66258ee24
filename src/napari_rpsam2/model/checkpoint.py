"""Shift-block checkpoints: safetensors tensors plus a JSON header.

The header sits in the safetensors metadata under the key ``rpsam2`` and
holds the format version, the backbone, the shift-block settings, a summary
of the training data and the metrics.  Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import torch

from .._atomic import atomic_write, verify_safetensors
from .shift_block import ShiftBlock, ShiftBlockConfig

__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "save_checkpoint", "load_checkpoint",
           "read_header"]

FORMAT = "napari-rpsam2-shift-block"
FORMAT_VERSION = 1
_HEADER_KEY = "rpsam2"
_BLOCK_PREFIX = "shift_block."


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, foreign or does not fit the model."""


def save_checkpoint(
    path: str | os.PathLike,
    block: ShiftBlock,
    backbone: str,
    *,
    training: dict | None = None,
    metrics: dict | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``block`` (and optional extra tensors, e.g. optimizer state) atomically.

    Parameters
    ----------
    path : path
        Destination ``.safetensors`` file; an existing file is replaced only
        once the new one is completely written.
    block : ShiftBlock
        The weights to store.
    backbone : str
        Name of the SAM2 backbone the block was trained with.
    training, metrics : dict, optional
        JSON-serialisable summaries stored in the header.
    extra_tensors : dict, optional
        More tensors (names must not start with ``shift_block.``).
    """
    from safetensors.torch import save_file

    tensors = {_BLOCK_PREFIX + k: v.detach().cpu().contiguous() for k, v in block.state_dict().items()}
    for name, tensor in (extra_tensors or {}).items():
        if name.startswith(_BLOCK_PREFIX):
            raise ValueError(f"extra tensor name {name!r} clashes with the shift block's")
        tensors[name] = tensor.detach().cpu().contiguous()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backbone": backbone,
        "shift_block": block.config.to_dict(),
        "parameters": block.parameter_count(),
        "training": training or {},
        "metrics": metrics or {},
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta = {_HEADER_KEY: json.dumps(header)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta), verify=verify_safetensors)


def _check_container(path: Path) -> None:
    """Fail early, with a precise reason, on files that are not safetensors."""
    if not path.exists():
        raise CheckpointError(f"shift-block checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"shift-block checkpoint {path} is a folder, not a file")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: 8-byte little-endian header length, then a JSON object.  Test
    # that first: a header length whose low byte is 0x80 must not look like a pickle.
    looks_safetensors = len(head) == 9 and head[8:9] == b"{"
    is_zip = head[:2] == b"PK"
    is_pickle = head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5
    if not looks_safetensors and (is_zip or is_pickle):
        raise CheckpointError(
            f"{path} is a PyTorch pickle file, which is never opened here (it could run code); "
            "shift-block checkpoints are .safetensors files written by napari-rpsam2"
        )
    if len(head) < 8:
        raise CheckpointError(f"{path} is too short ({size} bytes) to be a safetensors checkpoint")
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len + 8 > size:
        raise CheckpointError(
            f"{path} is truncated or not a safetensors file (header says {header_len} bytes, "
            f"file has {size}); save the checkpoint again"
        )
    try:
        verify_safetensors(path)
    except ValueError as err:
        raise CheckpointError(
            f"{path} is truncated or damaged ({err}); use an earlier checkpoint or save it again"
        ) from None


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint, after checking it is ours and readable."""
    from safetensors import safe_open

    path = Path(path)
    _check_container(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise CheckpointError(f"{path} is damaged and cannot be read as safetensors ({err})") from err
    if _HEADER_KEY not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not a napari-rpsam2 shift block (no header)")
    try:
        header = json.loads(meta[_HEADER_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} has a damaged header ({err})") from err
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {header.get('format')!r}, expected {FORMAT!r}")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"{path} has format version {version!r}; this napari-rpsam2 reads version "
            f"{FORMAT_VERSION} and older. Update napari-rpsam2 or re-train the shift block."
        )
    return header


def load_checkpoint(
    path: str | os.PathLike,
    backbone: str | None = None,
) -> tuple[ShiftBlock, dict, dict[str, torch.Tensor]]:
    """Read a checkpoint.

    Parameters
    ----------
    path : path
        A ``.safetensors`` file written by :func:`save_checkpoint`.
    backbone : str, optional
        When given, the checkpoint must have been trained with this backbone.

    Returns
    -------
    (ShiftBlock on CPU, header dict, extra tensors)
    """
    from safetensors.torch import load_file

    path = Path(path)
    header = read_header(path)
    if backbone is not None and header.get("backbone") != backbone:
        raise CheckpointError(
            f"{path} was trained with backbone {header.get('backbone')!r} but the model uses "
            f"{backbone!r}; choose backbone {header.get('backbone')!r} or another shift block"
        )
    try:
        config = ShiftBlockConfig.from_dict(header["shift_block"])
        tensors = load_file(str(path))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has an unusable header ({err})") from err
    except Exception as err:
        raise CheckpointError(f"{path} is damaged and cannot be read ({err})") from err
    state = {k[len(_BLOCK_PREFIX):]: v for k, v in tensors.items() if k.startswith(_BLOCK_PREFIX)}
    # copies, not views of the file's memory map (the file may be replaced while training)
    extras = {k: v.clone() for k, v in tensors.items() if not k.startswith(_BLOCK_PREFIX)}
    block = ShiftBlock(config)
    expected = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise CheckpointError(f"{path} does not match its own header: tensors differ at {diff}")
    block.load_state_dict(state)
    return block, header, extras
