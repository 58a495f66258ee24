"""What SAM2's image encoder yields for one 2D image."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ImageEmbedding"]


@dataclass
class ImageEmbedding:
    """Encoder output for one image, ready for the prompt decoder.

    Attributes
    ----------
    image_embed : tensor (1, 256, E, E)
        Lowest-resolution features with ``no_mem_embed`` added; ``E`` is the
        backbone's ``embed_size`` (64 at SAM2's 1024 input).
    high_res_feats : list of tensors
        ``(1, 32, 4E, 4E)`` and ``(1, 64, 2E, 2E)`` skip features.
    image_hw : (int, int)
        Size of the original image; masks come back at this size.
    memory_embed : tensor (1, 256, E, E), optional
        The same lowest-resolution features *before* ``no_mem_embed`` is
        added: what SAM2's memory path (video propagation) reads.  ``None``
        for embeddings made before it was kept; the model encodes those again.
    """

    image_embed: torch.Tensor
    high_res_feats: list[torch.Tensor]
    image_hw: tuple[int, int]
    memory_embed: torch.Tensor | None = None

    def _all(self) -> list[torch.Tensor]:
        extra = [] if self.memory_embed is None or self.memory_embed is self.image_embed else [self.memory_embed]
        return [self.image_embed, *self.high_res_feats, *extra]

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        return sum(t.numel() * t.element_size() for t in self._all())

    @property
    def device(self) -> torch.device:
        """Device the tensors live on."""
        return self.image_embed.device

    def to(self, device: torch.device | str) -> "ImageEmbedding":
        """Copy onto ``device`` (returns ``self`` when already there)."""
        device = torch.device(device)
        if self.image_embed.device == device:
            return self
        return ImageEmbedding(
            self.image_embed.to(device),
            [f.to(device) for f in self.high_res_feats],
            self.image_hw,
            None if self.memory_embed is None else self.memory_embed.to(device),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name → tensor mapping, for safetensors."""
        out = {"image_embed": self.image_embed.contiguous()}
        for i, feat in enumerate(self.high_res_feats):
            out[f"high_res_{i}"] = feat.contiguous()
        if self.memory_embed is not None:
            out["memory_embed"] = self.memory_embed.contiguous()
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], image_hw: tuple[int, int]) -> "ImageEmbedding":
        """Inverse of :meth:`tensors`."""
        n = sum(1 for k in tensors if k.startswith("high_res_"))
        return cls(tensors["image_embed"], [tensors[f"high_res_{i}"] for i in range(n)], image_hw,
                   tensors.get("memory_embed"))
