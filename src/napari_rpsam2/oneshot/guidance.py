"""PerSAM's two training-free decoder changes, on SAM2's mask decoder (sam2 itself is not modified).

* **Target-guided attention**: in every token-to-image cross-attention of
  the decoder's two-way transformer, the attention logits of image cell ``j``
  get ``alpha · z_j`` added, where ``z`` is the target similarity map
  standardised to zero mean and unit spread (resized to the decoder's image
  grid).  Attention to a cell is thus multiplied by ``exp(alpha · z_j)``
  before renormalisation: the tokens look more at where the target is likely.
* **Target-semantic prompting**: the target's embedding (the mean reference
  foreground feature) is added to every token the transformer starts from —
  SAM2's output tokens and the prompt tokens — so the prompts carry the
  target's semantics besides its position.

Both act only inside :func:`guided_decoder`, a context manager that, for its
duration, swaps the ``forward`` of the decoder's token-to-image attention
modules and puts a pre-hook on the transformer; everything is put back on
exit, so a decoder call outside it (or with both parts off) is SAM2's own;
calls from other threads meanwhile are left alone too, and two guided calls
never overlap.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["DecoderGuidance", "guided_decoder", "standardised_bias"]

_GUIDED = threading.Lock()  # one guided decoder call at a time (they patch shared modules)


@dataclass
class DecoderGuidance:
    """What PerSAM adds to one decoder call.

    Attributes
    ----------
    similarity : ndarray (h, w) or None
        Target similarity map on the feature grid (``None``: no guided attention).
    embedding : tensor (C,) or None
        Target embedding added to the decoder's tokens (``None``: no semantic prompting).
    alpha : float
        Weight of the standardised similarity in the attention logits.
    record : bool
        Keep each guided attention map (probabilities ``(B, heads, tokens, h·w)``)
        in ``attention`` and the transformer's input tokens in ``tokens``
        (for tests and inspection); with ``similarity=None`` and ``record`` the
        attention is computed explicitly but left unchanged.
    """

    similarity: np.ndarray | None = None
    embedding: torch.Tensor | None = None
    alpha: float = 1.0
    record: bool = False
    attention: list[torch.Tensor] = field(default_factory=list)
    tokens: list[torch.Tensor] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Whether the decoder must be touched at all."""
        return self.similarity is not None or self.embedding is not None or self.record


def standardised_bias(similarity: np.ndarray, hw: tuple[int, int], alpha: float) -> torch.Tensor:
    """``alpha`` × the similarity map standardised (zero mean, unit std), resized to ``hw``, flattened."""
    s = torch.as_tensor(np.asarray(similarity, dtype=np.float32))[None, None]
    if tuple(s.shape[-2:]) != tuple(hw):
        s = F.interpolate(s, size=tuple(hw), mode="bilinear", align_corners=False)
    s = s.flatten()
    return float(alpha) * (s - s.mean()) / s.std().clamp_min(1e-6)


def _guided_forward(module, guidance: DecoderGuidance, state: dict):
    """A replacement for SAM2's ``Attention.forward`` with the logits biased by ``state['bias']``."""

    def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if threading.get_ident() != state["thread"]:  # another thread's plain decoder call
            return type(module).forward(module, q, k, v)
        heads = module.num_heads
        q = module._separate_heads(module.q_proj(q), heads)
        k = module._separate_heads(module.k_proj(k), heads)
        v = module._separate_heads(module.v_proj(v), heads)
        logits = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        bias = state.get("bias")
        if bias is not None:
            logits = logits + bias.to(logits)
        attn = logits.softmax(dim=-1)
        if guidance.record:
            guidance.attention.append(attn.detach().clone())
        return module.out_proj(module._recombine_heads(attn @ v))

    return forward


def _transformer_pre_hook(guidance: DecoderGuidance, state: dict):
    def hook(_module, args):
        if threading.get_ident() != state["thread"]:
            return None
        image_embedding, image_pe, tokens = args
        h, w = image_embedding.shape[-2:]
        state["bias"] = (None if guidance.similarity is None
                         else standardised_bias(guidance.similarity, (h, w), guidance.alpha).to(image_embedding))
        if guidance.embedding is not None:
            tokens = tokens + torch.as_tensor(guidance.embedding).to(tokens).reshape(1, 1, -1)
        if guidance.record:
            guidance.tokens.append(tokens.detach().clone())
        return image_embedding, image_pe, tokens

    return hook


@contextmanager
def guided_decoder(mask_decoder, guidance: DecoderGuidance | None) -> Iterator[None]:
    """Run SAM2's ``mask_decoder`` with PerSAM's guidance inside the ``with`` block.

    ``guidance`` ``None`` (or with nothing active) leaves the decoder untouched.
    """
    if guidance is None or not guidance.active:
        yield
        return
    transformer = mask_decoder.transformer
    state: dict = {"thread": threading.get_ident()}
    modules = [layer.cross_attn_token_to_image for layer in transformer.layers]
    modules.append(transformer.final_attn_token_to_image)
    with _GUIDED:
        for m in modules:
            m.forward = _guided_forward(m, guidance, state)
        handle = transformer.register_forward_pre_hook(_transformer_pre_hook(guidance, state))
        try:
            yield
        finally:
            handle.remove()
            for m in modules:
                del m.forward  # back to the class's forward
