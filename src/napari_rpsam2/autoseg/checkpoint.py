"""Prompt-generator checkpoints: safetensors weights plus a JSON header (nothing is unpickled)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

from .._atomic import atomic_write, verify_safetensors
from ..model.checkpoint import CheckpointError
from .generator import GeneratorConfig, PromptGenerator, build_network

__all__ = ["FORMAT", "FORMAT_VERSION", "save_generator", "load_generator", "read_generator_header"]

FORMAT = "napari-rpsam2-prompt-generator"
FORMAT_VERSION = 1
_KEY = "rpsam2"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import monai

    try:
        own = version("napari-rpsam2")
    except PackageNotFoundError:
        own = "0.0.0"
    return {"napari_rpsam2": own, "torch": torch.__version__, "monai": monai.__version__,
            "python": platform.python_version()}


def save_generator(path: str | os.PathLike, generator: PromptGenerator, *, training: dict | None = None,
                   metrics: dict | None = None) -> Path:
    """Write the generator's weights and header to ``path`` atomically."""
    from safetensors.torch import save_file

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": {"name": "monai.networks.nets.BasicUNet", "spatial_dims": 2,
                         **generator.config.to_json()},
        "classes": generator.classes,
        "input": {"normalisation": "percentiles", "low": 0.5, "high": 99.5,
                  "resize": f"bilinear to {generator.config.input_size}²",
                  "channels_per_slice": generator.config.channels_per_slice,
                  "context": generator.config.context},
        "versions": _versions(),
        "training": training or {},
        "metrics": metrics or {},
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.network.state_dict().items()}
    generator.header = header
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_KEY: json.dumps(header)}),
                        verify=verify_safetensors)


def read_generator_header(path: str | os.PathLike) -> dict:
    """The JSON header of a generator file, or :class:`CheckpointError` saying what is wrong."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"prompt generator {path} does not exist")
    try:
        verify_safetensors(path)
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (OSError, ValueError) as err:
        raise CheckpointError(f"prompt generator {path} is damaged or not a safetensors file ({err})") from None
    try:
        header = json.loads(meta.get(_KEY, "null"))
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a prompt generator (train one with 'rpsam2 autoseg train')")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"prompt generator {path} was written by a newer napari-rpsam2; update the plugin")
    return header


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> PromptGenerator:
    """A generator from a file written by :func:`save_generator`."""
    from safetensors.torch import load_file

    header = read_generator_header(path)
    arch = dict(header["architecture"])
    try:
        config = GeneratorConfig(classes=list(arch["classes"]), context=int(arch["context"]),
                                 channels_per_slice=int(arch["channels_per_slice"]),
                                 input_size=int(arch["input_size"]), features=tuple(arch["features"]))
        net = build_network(config)
        net.load_state_dict(load_file(str(path)), strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"prompt generator {path} does not fit its own header ({err})") from None
    return PromptGenerator(net.to(device), config, header)
