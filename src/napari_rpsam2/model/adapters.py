"""Light adapters for SAM2 (RFMedSAM 2): depth-wise convolution adapters, zero-initialised.

One adapter after every Hiera block of the image encoder, every memory-attention
layer and every two-way block of the mask decoder (on the image tokens), and a
small CNN adapter after each lateral convolution of the FPN neck.  Each one adds
its output to its input; the last convolution starts at zero, so an untrained
adapter leaves SAM2's outputs bit-identical.  The adapters sit on SAM2's own
modules as forward hooks, so the image predictor path, the video (memory) path
and the training path all see them.  SAM2's own weights stay frozen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .._atomic import atomic_write, verify_safetensors
from .checkpoint import CheckpointError

__all__ = ["AdapterConfig", "DepthwiseAdapter", "NeckAdapter", "SAM2Adapters", "save_adapters", "load_adapters",
           "read_adapter_header", "check_adapter_file", "ADAPTER_FORMAT"]

ADAPTER_FORMAT = "napari-rpsam2-sam2-adapters"
_VERSION = 1
_KEY = "rpsam2"


@dataclass
class AdapterConfig:
    """Where adapters go and how wide they are (every place switchable)."""

    rank: int = 16
    encoder: bool = True
    memory: bool = True
    decoder: bool = True
    neck: bool = True

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError("adapter rank must be at least 1")
        if not (self.encoder or self.memory or self.decoder or self.neck):
            raise ValueError("switch on adapters in at least one place (encoder, memory, decoder, neck)")


def _in_own_dtype(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off on ``x``'s GPU, so a product added onto ``x`` keeps ``x``'s precision (nothing on a CPU)."""
    return torch.autocast(x.device.type, enabled=False) if x.is_cuda else contextlib.nullcontext()


class DepthwiseAdapter(nn.Module):
    """LayerNorm → linear → pointwise conv → 3×3 depth-wise conv → GELU → LayerNorm → pointwise conv (+ input).

    Works on channels-last tokens laid out on a grid, ``(B, H, W, C)``.
    """

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, rank)
        self.point_in = nn.Conv2d(rank, rank, 1)
        self.depthwise = nn.Conv2d(rank, rank, 3, padding=1, groups=rank)
        self.norm_mid = nn.LayerNorm(rank)
        self.point_out = nn.Conv2d(rank, dim, 1)
        nn.init.zeros_(self.point_out.weight)
        nn.init.zeros_(self.point_out.bias)
        self._kept: tuple | None = None  # composed maps for inference, with the weights' versions

    def _compose(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``r × C`` input map (linear, then pointwise conv) with its bias, and the ``(r + 1) × C`` output map.

        The output convolution's bias is the last row of the output map (it meets a column of ones).
        """
        point = self.point_in.weight[:, :, 0, 0]
        weight_in = point @ self.down.weight
        bias_in = point @ self.down.bias + self.point_in.bias
        c, r = self.point_out.out_channels, self.point_out.in_channels
        weight_out = torch.cat([self.point_out.weight.view(c, r).t(), self.point_out.bias[None]])
        return weight_in, bias_in, weight_out

    def _maps(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_compose`, kept between calls while no gradient is wanted and no weight has changed."""
        if torch.is_grad_enabled():
            return self._compose()
        params = (self.down.weight, self.down.bias, self.point_in.weight, self.point_in.bias,
                  self.point_out.weight, self.point_out.bias)
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        if self._kept is None or self._kept[0] != key:
            self._kept = (key, self._compose())
        return self._kept[1]

    def hidden(self, x: torch.Tensor, maps: tuple | None = None) -> torch.Tensor:
        """The adapter's rank-``r`` features of ``x`` ``(B, H, W, C)``, channels last ``(B, H, W, r)``.

        The linear map and the first pointwise convolution have nothing between them, so they
        run as one ``r × C`` matrix; the depth-wise convolution reads the channels-last tensor as
        it lies (only ``r`` channels), so no ``C``-wide tensor is ever permuted or copied.
        """
        weight_in, bias_in, _ = maps or self._maps()
        h = F.linear(self.norm_in(x), weight_in, bias_in)
        h = F.gelu(self.depthwise(h.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        return self.norm_mid(h)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """What the adapter adds to ``x`` ``(B, H, W, C)``."""
        return F.linear(self.hidden(x), self.point_out.weight[:, :, 0, 0], self.point_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + delta(x)`` for ``(B, H, W, C)`` tokens, as one matrix product added onto ``x``.

        The output convolution's bias rides along as an extra row of its weight (a column of
        ones on the features).  Zero output weights give back ``x`` exactly, in its own layout.
        """
        maps = self._maps()
        h = self.hidden(x, maps)
        flat = h.reshape(-1, h.shape[-1])
        features = torch.cat([flat, flat.new_ones(flat.shape[0], 1)], dim=1).to(x.dtype)
        with _in_own_dtype(x):  # under CUDA autocast, the product would be rounded to bfloat16
            delta = (features @ maps[2].to(x.dtype)).view(x.shape)
        # added elementwise, so the sum keeps x's memory layout: what SAM2 computes next
        # reads the same layout as without adapters (bit-identical when the adapter is zero)
        return x + delta

    def on_sequence(self, tokens: torch.Tensor) -> torch.Tensor:
        """The adapter on ``(B, H·W, C)`` tokens of a square grid."""
        b, n, c = tokens.shape
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"adapter needs a square token grid, got {n} tokens")
        return self(tokens.reshape(b, side, side, c)).view(b, n, c)


class NeckAdapter(nn.Module):
    """A small CNN adapter on ``(B, C, H, W)`` maps: 3×3 depth-wise conv → GELU → two pointwise convs, residual."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.down = nn.Conv2d(dim, rank, 1)
        self.up = nn.Conv2d(rank, dim, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.down(F.gelu(self.depthwise(x)))).to(x.dtype)


def _sites(sam2: nn.Module, config: AdapterConfig) -> dict[str, tuple[nn.Module, str, int]]:
    """``name → (SAM2 module, kind, channels)`` of every place an adapter goes."""
    sites: dict[str, tuple[nn.Module, str, int]] = {}
    if config.encoder:
        for i, block in enumerate(sam2.image_encoder.trunk.blocks):
            sites[f"encoder_{i}"] = (block, "grid", int(block.dim_out))
    if config.neck:
        for i, conv in enumerate(sam2.image_encoder.neck.convs):
            sites[f"neck_{i}"] = (conv, "map", int(conv.conv.out_channels))
    if config.memory:
        for i, layer in enumerate(sam2.memory_attention.layers):
            sites[f"memory_{i}"] = (layer, "sequence", int(layer.d_model))
    if config.decoder:
        dim = int(sam2.sam_mask_decoder.transformer_dim)
        for i, layer in enumerate(sam2.sam_mask_decoder.transformer.layers):
            sites[f"decoder_{i}"] = (layer, "keys", dim)
    return sites


class SAM2Adapters(nn.Module):
    """All adapters for one SAM2 model; :meth:`attach` hooks them onto it."""

    def __init__(self, sam2: nn.Module, config: AdapterConfig = AdapterConfig()) -> None:
        super().__init__()
        self.config = config
        self.kinds: dict[str, str] = {}
        self.adapters = nn.ModuleDict()
        for name, (_, kind, dim) in _sites(sam2, config).items():
            self.kinds[name] = kind
            self.adapters[name] = NeckAdapter(dim, config.rank) if kind == "map" else DepthwiseAdapter(dim, config.rank)
        self._handles: list = []

    def parameter_count(self) -> int:
        """Trainable adapter parameters."""
        return sum(p.numel() for p in self.parameters())

    def attach(self, sam2: nn.Module) -> "SAM2Adapters":
        """Hook every adapter onto its SAM2 module (moved to SAM2's device); returns ``self``."""
        self.detach()
        self.to(next(sam2.parameters()).device)
        for name, (module, kind, _) in _sites(sam2, self.config).items():
            self._handles.append(module.register_forward_hook(self._hook(self.adapters[name], kind)))
        return self

    def detach(self) -> None:
        """Remove the hooks: SAM2 is plain SAM2 again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @staticmethod
    def _hook(adapter: nn.Module, kind: str):
        def hook(module, inputs, output):
            if kind == "keys":  # a two-way block returns (queries, keys): adapt the image tokens
                queries, keys = output
                return queries, adapter.on_sequence(keys)
            if kind == "sequence":
                return adapter.on_sequence(output)
            return adapter(output)

        return hook

    def digest(self) -> str:
        """A short hash of the adapter weights (part of the embedding cache's key)."""
        h = hashlib.sha256(json.dumps(asdict(self.config), sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def save_adapters(path: str | os.PathLike, adapters: SAM2Adapters, backbone: str, *,
                  training: dict | None = None) -> Path:
    """Write the adapters only (not SAM2) as safetensors with a header naming the backbone."""
    from safetensors.torch import save_file

    header = {"format": ADAPTER_FORMAT, "format_version": _VERSION, "backbone": backbone,
              "config": asdict(adapters.config), "parameters": adapters.parameter_count(),
              "training": training or {}}
    tensors = {k: v.detach().cpu().contiguous() for k, v in adapters.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_KEY: json.dumps(header)}),
                        verify=verify_safetensors)


def read_adapter_header(path: str | os.PathLike) -> dict:
    """The header of an adapter file, or :class:`CheckpointError` naming the file and the problem."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"adapter file {path} does not exist")
    try:
        verify_safetensors(path)
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        header = json.loads(meta.get(_KEY, "null"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"adapter file {path} is damaged or not a safetensors file ({err})") from None
    if not isinstance(header, dict) or header.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(f"{path} is not a SAM2 adapter file (make one with 'rpsam2 finetune')")
    return header


def check_adapter_file(path: str | os.PathLike, backbone: str) -> dict:
    """The header of an adapter file made for ``backbone``, else :class:`CheckpointError` in one line.

    Reads only the header: call it before SAM2 is built, so a wrong file is refused at once.
    """
    header = read_adapter_header(path)
    if header.get("backbone") != backbone:
        raise CheckpointError(f"adapters {path} were trained for {header.get('backbone')}, not {backbone}: "
                              f"load them with the {header.get('backbone')} backbone (CLI: --backbone)")
    return header


def load_adapters(path: str | os.PathLike, sam2: nn.Module, backbone: str) -> tuple[SAM2Adapters, dict]:
    """Adapters from ``path`` built for ``sam2`` (not yet attached); the file must name ``backbone``."""
    from safetensors.torch import load_file

    header = check_adapter_file(path, backbone)
    try:
        adapters = SAM2Adapters(sam2, AdapterConfig(**header["config"]))
        adapters.load_state_dict(load_file(str(path)), strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"adapter file {path} does not fit {backbone} ({err})") from None
    return adapters, header
