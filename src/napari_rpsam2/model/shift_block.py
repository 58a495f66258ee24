"""The RP-SAM2 shift block: a click attends to the image and moves.

``P' = P + sigmoid(s) * tanh(delta(Δp))`` where ``Δp`` is the point token after
six point-to-image cross-attention blocks (docs/method.md, "Shift block").

The image tokens are never updated by the point, so every block's keys and
values depend on the image alone.  :meth:`ShiftBlock.image_context` computes
them once per image; each click then costs only its own attention query.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ShiftBlockConfig", "ShiftBlock", "ImageContext", "weights_digest"]

ImageContext = list[tuple[torch.Tensor, torch.Tensor]]
"""Per block, keys and values of one image, each ``(heads, tokens, head_dim)``."""


@dataclass(frozen=True)
class ShiftBlockConfig:
    """Hyper-parameters of the shift block (stored in every checkpoint)."""

    dim: int = 256
    depth: int = 6
    heads: int = 8
    mlp_dim: int = 2048
    image_tokens: int = 64 * 64
    """Size of the learned image position table: SAM2's 64×64 grid at its 1024 input
    (resampled to the grid of a smaller input)."""
    init_scale: float = 0.1

    def to_dict(self) -> dict:
        """Plain-dict form, for checkpoint headers."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ShiftBlockConfig":
        """Build from a checkpoint header; unknown keys are an error."""
        names = set(cls.__dataclass_fields__)
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown shift-block settings {sorted(unknown)}")
        return cls(**data)


class PointToImageBlock(nn.Module):
    """Cross-attention from one query token to the image, then an MLP.

    Post-norm residual layout: ``q = LN(q + attn(q)); q = LN(q + mlp(q))``.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.norm_attn = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))
        self.norm_mlp = nn.LayerNorm(dim)

    def keys_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``tokens`` (N, dim), each ``(heads, N, head_dim)``."""
        n = tokens.shape[0]
        k = self.k_proj(tokens).view(n, self.heads, self.head_dim).transpose(0, 1)
        v = self.v_proj(tokens).view(n, self.heads, self.head_dim).transpose(0, 1)
        return k, v

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Update ``query`` (B, dim) by attending to one image's keys/values."""
        b = query.shape[0]
        q = self.q_proj(query).view(b, self.heads, self.head_dim)
        scores = torch.einsum("bhd,hnd->bhn", q, keys) / math.sqrt(self.head_dim)
        attended = torch.einsum("bhn,hnd->bhd", scores.softmax(dim=-1), values)
        query = self.norm_attn(query + self.out_proj(attended.reshape(b, -1)))
        return self.norm_mlp(query + self.mlp(query))


class ShiftBlock(nn.Module):
    """Learned click refinement ``F(P, E(I), ξ(P))``.

    An untrained block is the identity: the offset head is zero-initialised.
    """

    def __init__(self, config: ShiftBlockConfig | None = None) -> None:
        super().__init__()
        self.config = config or ShiftBlockConfig()
        c = self.config
        self.point_pos = nn.Parameter(torch.randn(1, c.dim) * 0.02)
        self.image_pos = nn.Parameter(torch.randn(c.image_tokens, c.dim) * 0.02)
        self.blocks = nn.ModuleList(
            PointToImageBlock(c.dim, c.heads, c.mlp_dim) for _ in range(c.depth)
        )
        self.offset_head = nn.Linear(c.dim, 2)
        nn.init.zeros_(self.offset_head.weight)
        nn.init.zeros_(self.offset_head.bias)
        logit = math.log(c.init_scale / (1.0 - c.init_scale))
        self.scale_logit = nn.Parameter(torch.full((2,), logit))

    @property
    def max_shift(self) -> torch.Tensor:
        """Largest possible shift per axis ``(x, y)``, as a fraction of the axis."""
        return torch.sigmoid(self.scale_logit)

    def image_context(self, image_embed: torch.Tensor) -> ImageContext:
        """Keys and values of every block for one image.

        Parameters
        ----------
        image_embed : tensor (dim, E, E) or (1, dim, E, E)
            SAM2's image embedding (``no_mem_embed`` already added); ``E`` is 64
            at SAM2's 1024 input.  On another square grid the position table is
            resampled bilinearly (as SAM2 does with its own position embedding).
        """
        if image_embed.dim() == 4:
            if image_embed.shape[0] != 1:
                raise ValueError("image_context takes one image at a time")
            image_embed = image_embed[0]
        tokens = image_embed.flatten(1).transpose(0, 1)
        positions = self._positions(tuple(image_embed.shape[-2:]))
        if positions is None or tokens.shape != positions.shape:
            raise ValueError(
                f"image embedding gives {tuple(tokens.shape)} tokens, the shift block expects "
                f"(E·E, {self.config.dim}) for a square grid E (trained on {tuple(self.image_pos.shape)})"
            )
        tokens = tokens.to(self.image_pos.dtype) + positions
        return [block.keys_values(tokens) for block in self.blocks]

    def _positions(self, grid_hw: tuple[int, int]) -> torch.Tensor | None:
        """The image position table for an ``(h, w)`` grid, ``None`` where it cannot be made."""
        if grid_hw[0] * grid_hw[1] == self.image_pos.shape[0]:
            return self.image_pos
        side = math.isqrt(self.image_pos.shape[0])
        if grid_hw[0] != grid_hw[1] or side * side != self.image_pos.shape[0]:
            return None
        table = self.image_pos.transpose(0, 1).reshape(1, -1, side, side)
        table = F.interpolate(table, size=grid_hw, mode="bilinear", align_corners=False, antialias=True)
        return table[0].flatten(1).transpose(0, 1)

    def forward(
        self, points_xy: torch.Tensor, point_tokens: torch.Tensor, context: ImageContext
    ) -> torch.Tensor:
        """Refine clicks on one image.

        Parameters
        ----------
        points_xy : tensor (B, 2)
            Clicks in the normalized frame, ``(x, y)`` in ``[0, 1]``.
        point_tokens : tensor (B, dim)
            The prompt encoder's token for each click (a positive point).
        context : ImageContext
            From :meth:`image_context` for the image the clicks are on.

        Returns
        -------
        tensor (B, 2)
            Refined clicks in the normalized frame (not yet clamped).
        """
        query = point_tokens.to(self.point_pos.dtype) + self.point_pos
        for block, (keys, values) in zip(self.blocks, context):
            query = block(query, keys, values)
        offset = self.max_shift * torch.tanh(self.offset_head(query))
        return points_xy + offset.to(points_xy.dtype)

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def offset_is_identity(block: ShiftBlock) -> bool:
    """True when the offset head is still all zero (a fresh block)."""
    return bool(
        torch.count_nonzero(block.offset_head.weight) == 0
        and torch.count_nonzero(block.offset_head.bias) == 0
    )


def weights_digest(block: ShiftBlock) -> str:
    """Short content hash of a block's weights: equal for equal weights, whatever the object."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in block.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()
