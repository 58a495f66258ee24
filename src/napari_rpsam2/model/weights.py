"""Where SAM2 weights come from: a local file, the Hugging Face hub, or ``random``.

Nothing a user picks is unpickled: ``.pt`` files are read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers and refuses any other Python object.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "BackboneSpec",
    "BACKBONES",
    "WeightsError",
    "resolve_backbone",
    "fetch_weights",
    "read_state_dict",
]


_HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class WeightsError(RuntimeError):
    """SAM2 weights could not be found or read; the message says what to do."""


@dataclass(frozen=True)
class BackboneSpec:
    """A SAM2 model size: its ``sam2`` config and where its weights live."""

    name: str
    config: str
    hf_id: str
    filename: str


def _spec(name: str, cfg_dir: str, short: str, hf_id: str) -> BackboneSpec:
    return BackboneSpec(name, f"configs/{cfg_dir}/{cfg_dir}_hiera_{short}.yaml", hf_id, f"{name}.pt")


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        _spec("sam2.1_hiera_tiny", "sam2.1", "t", "facebook/sam2.1-hiera-tiny"),
        _spec("sam2.1_hiera_small", "sam2.1", "s", "facebook/sam2.1-hiera-small"),
        _spec("sam2.1_hiera_base_plus", "sam2.1", "b+", "facebook/sam2.1-hiera-base-plus"),
        _spec("sam2.1_hiera_large", "sam2.1", "l", "facebook/sam2.1-hiera-large"),
        _spec("sam2_hiera_tiny", "sam2", "t", "facebook/sam2-hiera-tiny"),
        _spec("sam2_hiera_small", "sam2", "s", "facebook/sam2-hiera-small"),
        _spec("sam2_hiera_base_plus", "sam2", "b+", "facebook/sam2-hiera-base-plus"),
        _spec("sam2_hiera_large", "sam2", "l", "facebook/sam2-hiera-large"),
    )
}
_ALIASES = {"tiny": "sam2.1_hiera_tiny", "small": "sam2.1_hiera_small",
            "base_plus": "sam2.1_hiera_base_plus", "base+": "sam2.1_hiera_base_plus",
            "large": "sam2.1_hiera_large"}


def resolve_backbone(name: str) -> BackboneSpec:
    """Look up a backbone by name (``sam2.1_hiera_tiny``, ``tiny``, a HF id, ...)."""
    key = _ALIASES.get(name, name)
    if key in BACKBONES:
        return BACKBONES[key]
    for spec in BACKBONES.values():
        if spec.hf_id == name:
            return spec
    raise WeightsError(
        f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}"
    )


def fetch_weights(spec: BackboneSpec, sam2_weights: str | os.PathLike) -> tuple[Path | None, str]:
    """Find the weights file for ``spec``.

    Parameters
    ----------
    spec : BackboneSpec
        The backbone size.
    sam2_weights : str or path
        ``"random"`` (seeded random weights, for tests), a local checkpoint
        path, or a Hugging Face model id such as ``facebook/sam2.1-hiera-tiny``.

    Returns
    -------
    (path or None, signature)
        ``None`` for random weights; the signature names the weights for caches.
    """
    text = os.fspath(sam2_weights)
    if text == "random":
        return None, "random"
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_file():
            raise WeightsError(f"SAM2 weights {path} is a folder; pick the checkpoint file ({spec.filename})")
        stat = path.stat()
        return path, f"file:{path.name}:{stat.st_size}:{stat.st_mtime_ns}"
    if _HF_ID.fullmatch(text) and path.suffix not in (".pt", ".pth", ".safetensors"):
        return _download(spec, text)
    raise WeightsError(
        f"SAM2 weights file {path} does not exist. Download {spec.filename} from "
        f"https://huggingface.co/{spec.hf_id} and give its path, or use the model id {spec.hf_id!r}."
    )


def _host_resolves(url: str) -> bool:
    """Whether the hub's host name resolves (fails fast offline, where the hub client retries)."""
    import socket
    from urllib.parse import urlparse

    try:
        socket.getaddrinfo(urlparse(url).hostname or url, 443)
    except (OSError, UnicodeError):
        return False
    return True


def _download(spec: BackboneSpec, repo_id: str) -> tuple[Path, str]:
    from huggingface_hub import constants, hf_hub_download

    try:  # the hub cache first: no network round trip (and no retries) when the file is there
        local = hf_hub_download(repo_id=repo_id, filename=spec.filename, local_files_only=True)
    except Exception:
        local = None
    try:
        if local is None:
            if constants.HF_HUB_OFFLINE:
                raise FileNotFoundError("HF_HUB_OFFLINE is set and the file is not in the cache")
            if not _host_resolves(constants.ENDPOINT):
                raise ConnectionError(f"no network: {constants.ENDPOINT} cannot be resolved")
            local = hf_hub_download(repo_id=repo_id, filename=spec.filename, etag_timeout=10)
    except Exception as err:  # offline, missing repo, proxy errors: all end the same way
        raise WeightsError(
            f"could not get {spec.filename} from the Hugging Face hub ({repo_id}): "
            f"{type(err).__name__}: {err}. Without a network, download "
            f"https://huggingface.co/{repo_id}/resolve/main/{spec.filename} on another machine "
            "and choose that file as the SAM2 weights (or copy it into the Hugging Face cache)."
        ) from err
    local_path = Path(local)
    return local_path, f"hf:{repo_id}:{local_path.parent.name}:{spec.filename}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a SAM2 checkpoint without unpickling arbitrary objects.

    Accepts the official ``{"model": state_dict}`` ``.pt`` layout, a bare
    state dict, or a ``.safetensors`` file.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise WeightsError(f"SAM2 weights {path} is not a readable safetensors file: {err}") from err
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"refused to load SAM2 weights {path}: it holds Python objects other than "
            "tensors, and loading it could run code. Use the official checkpoint from "
            "the Hugging Face hub."
        ) from err
    except Exception as err:
        raise WeightsError(f"SAM2 weights {path} cannot be read ({type(err).__name__}: {err}); "
                           "the file may be truncated or not a PyTorch checkpoint") from err
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"SAM2 weights {path} is not a SAM2 checkpoint (no tensor dictionary inside)")
    return data
