"""A SAM2.1 tiny with seeded random weights at a 256-pixel input, for tests that track many frames.

SAM2's own code at a quarter of its usual input side (``++model.image_size=256``):
the encoder, memory attention and decoder are the same modules on 16× fewer
tokens, so a frame costs a fraction of a second on a CPU.  Used where the
input size does not matter (propagation rules, equivalence with SAM2's video
predictor built from the same config).  Click refinement is not used with it
(the shift block is sized for SAM2's 64×64 embedding).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

SMALL_OVERRIDES = ("++model.image_size=256",)


def small_backbone(*overrides: str):
    """A new small :class:`~napari_rpsam2.model.backbone.SAM2Backbone` (seed 0), for tests that change it."""
    from sam2.build_sam import build_sam2

    from napari_rpsam2.model.backbone import SAM2Backbone, resolve_backbone

    spec = resolve_backbone("sam2.1_hiera_tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sam2 = build_sam2(spec.config, ckpt_path=None, device="cpu", mode="eval",
                          hydra_overrides_extra=[*SMALL_OVERRIDES, *overrides])
    return SAM2Backbone(sam2, spec, "|".join([spec.name, "random:0", *SMALL_OVERRIDES, *overrides]))


@lru_cache(maxsize=2)
def small_model(*overrides: str):
    """A small :class:`~napari_rpsam2.RPSAM2` (built once per set of extra hydra ``overrides``)."""
    from napari_rpsam2 import RPSAM2

    return RPSAM2(small_backbone(*overrides))


def drifting_discs(n: int, size: int = 64, seed: int = 3) -> np.ndarray:
    """``(n, size, size, 3)`` uint8: two bright discs drifting over a textured background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size, 3), np.uint8)
    for t in range(n):
        base = 60 + 40 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 6, (size, size))
        a = (yy - size // 3) ** 2 + (xx - size // 5 - t % 20) ** 2 < (size // 8) ** 2
        b = (yy - 2 * size // 3) ** 2 + (xx - 3 * size // 4 + t % 15) ** 2 < (size // 9) ** 2
        img = np.where(a, 210, np.where(b, 170, base))
        out[t] = np.clip(np.stack([img, img * 0.8, img * 0.6], -1), 0, 255).astype(np.uint8)
    return out
