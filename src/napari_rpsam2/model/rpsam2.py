"""RP-SAM2: a frozen SAM2 plus a shift block that moves each positive click."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backbone import SAM2Backbone, logits_to_image
from .cached_encoding import CachedEncoding
from .checkpoint import load_checkpoint, save_checkpoint
from .coords import clamp_straight_through, normalized_to_pixels, pixels_to_normalized
from .embedding import ImageEmbedding
from .embedding_cache import EmbeddingCache
from .prompts import PromptError, box_to_normalized, check_box, check_clicks
from .shift_block import ImageContext, ShiftBlock, ShiftBlockConfig

__all__ = ["RPSAM2", "SegmentResult", "PromptError"]

_REFINE_CHUNK = 64  # clicks refined at once in one prompt
CancelFlag = Callable[[], bool]


@dataclass
class SegmentResult:
    """What one prompt gives.

    Attributes
    ----------
    mask : ndarray (H, W) bool
        The mask at the image's own size.
    points : ndarray (N, 2) float
        The clicks after refinement, ``(row, col)``; equal to ``clicks`` for
        negative clicks and when refinement is off.
    score : float
        SAM2's predicted IoU of the returned mask.
    clicks : ndarray (N, 2) float
        The clicks as given.
    labels : ndarray (N,) int
        1 positive, 0 negative.
    """

    mask: np.ndarray
    points: np.ndarray
    score: float
    clicks: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)


class RPSAM2(CachedEncoding):
    """Point-prompt segmentation with click refinement.

    Build with :meth:`load`.  The model stays on its device between clicks;
    embeddings are cached (memory LRU, optionally on disk).
    """

    def __init__(
        self,
        backbone: SAM2Backbone,
        shift_block: ShiftBlock | None = None,
        cache: EmbeddingCache | None = None,
        shift_block_header: dict | None = None,
    ) -> None:
        self.backbone = backbone
        self.cache = cache if cache is not None else EmbeddingCache()  # an empty cache is falsy
        self.shift_block_header: dict = shift_block_header or {}
        self._encode_lock = threading.Lock()
        self._contexts: OrderedDict[Hashable, ImageContext] = OrderedDict()
        self._block_version = 0
        self.shift_block = self._adopt(shift_block or ShiftBlock(ShiftBlockConfig()))

    # ---------------------------------------------------------------- set-up
    @classmethod
    def load(
        cls,
        backbone: str = "sam2.1_hiera_tiny",
        sam2_weights: str | os.PathLike = "random",
        shift_block: str | os.PathLike | None = None,
        device: str = "auto",
        *,
        seed: int = 0,
        cache_bytes: int = 1 << 30,
        cache_dir: str | os.PathLike | None = None,
        image_size: int | None = None,
        adapters: str | os.PathLike | None = None,
    ) -> "RPSAM2":
        """Build a model.

        Parameters
        ----------
        backbone : str
            SAM2 size, e.g. ``sam2.1_hiera_tiny`` (see ``BACKBONES``).
        sam2_weights : str or path
            ``"random"`` (seeded, for tests), a local checkpoint, or a HF id.
        shift_block : path, optional
            A shift-block ``.safetensors`` checkpoint; ``None`` gives a fresh
            (identity) block, so RP-SAM2 equals plain SAM2.
        device : str
            ``"auto"`` (cuda > mps > cpu) or an explicit torch device.
        seed : int
            Seed for random SAM2 weights and the fresh shift block.
        cache_bytes, cache_dir
            Embedding cache memory budget and optional disk folder.
        image_size : int, optional
            SAM2's input side (default 1024; see :meth:`SAM2Backbone.build`).
        adapters : path, optional
            A SAM2 adapter file (``rpsam2 finetune``) made for this backbone.
        """
        sam = SAM2Backbone.build(backbone, sam2_weights, device=device, seed=seed, image_size=image_size)
        if adapters is not None:
            sam.load_adapters(adapters)
        model = cls(sam, cache=EmbeddingCache(cache_bytes, cache_dir))
        if shift_block is not None:
            model.load_shift_block(shift_block)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model.set_shift_block(ShiftBlock(ShiftBlockConfig()))
        return model

    def _adopt(self, block: ShiftBlock) -> ShiftBlock:
        self._block_version += 1
        self._contexts.clear()
        return block.to(self.device).eval()

    def set_shift_block(self, block: ShiftBlock, header: dict | None = None) -> None:
        """Use ``block`` for refinement from now on."""
        self.shift_block = self._adopt(block)
        self.shift_block_header = header or {}

    def load_shift_block(self, path: str | os.PathLike) -> dict:
        """Load a checkpoint (must match this backbone); returns its header."""
        block, header, _ = load_checkpoint(path, backbone=self.backbone.name)
        self.set_shift_block(block, header)
        return header

    def save_shift_block(self, path: str | os.PathLike, *, training: dict | None = None,
                         metrics: dict | None = None) -> Path:
        """Write the current shift block as safetensors + JSON header (atomically)."""
        return save_checkpoint(path, self.shift_block, self.backbone.name,
                               training=training, metrics=metrics)

    @property
    def device(self) -> torch.device:
        """Device holding the backbone and the shift block."""
        return self.backbone.device

    def summary(self) -> str:
        """Human-readable model summary with parameter counts."""
        c = self.shift_block.config
        trained = self.shift_block_header.get("training", {}).get("epochs")
        lines = [
            f"RP-SAM2 on {self.device}",
            f"  backbone        {self.backbone.name} ({self.backbone.weights_signature.split('|')[1]})",
            f"  frozen params   {self.backbone.parameter_count():,}",
            f"  SAM2 adapters   {_adapter_text(self.backbone)}",
            f"  shift block     {self.shift_block.parameter_count():,} trainable parameters "
            f"({c.depth} blocks, {c.heads} heads, dim {c.dim}, MLP {c.mlp_dim})",
            f"  max shift (x,y) {tuple(round(v, 4) for v in self.shift_block.max_shift.tolist())}",
            f"  shift block     {'trained, ' + str(trained) + ' epochs' if trained else 'untrained (identity)'}",
            f"  embedding cache {len(self.cache)} slices, {self.cache.nbytes / 2**20:.0f} MiB "
            f"of {self.cache.max_bytes / 2**20:.0f} MiB",
        ]
        return "\n".join(lines)

    # ---------------------------------------------------------------- refinement
    def image_context(self, embedding: ImageEmbedding, memo_key: Hashable | None = None) -> ImageContext:
        """Shift-block keys/values for an image (memoised for the last two images)."""
        if memo_key is None:
            return self.shift_block.image_context(embedding.image_embed)
        full_key = (memo_key, self._block_version)
        ctx = self._contexts.get(full_key)
        if ctx is None:
            ctx = self.shift_block.image_context(embedding.image_embed)
            self._contexts[full_key] = ctx
            while len(self._contexts) > 2:
                self._contexts.popitem(last=False)
        return ctx

    def refine_normalized(self, embedding: ImageEmbedding, points_xy: torch.Tensor,
                          context: ImageContext | None = None) -> torch.Tensor:
        """Refined positions ``P'`` (B, 2) of single positive clicks, normalized frame.

        Differentiable; the result is kept inside the image with a
        straight-through clamp (gradients pass the border unchanged).
        """
        if context is None:
            context = self.shift_block.image_context(embedding.image_embed)
        tokens = self.backbone.point_tokens(points_xy)
        moved = self.shift_block(points_xy, tokens, context)
        return clamp_straight_through(moved, embedding.image_hw)

    # ---------------------------------------------------------------- segmentation
    def segment(
        self,
        image: np.ndarray,
        points: Sequence[Sequence[float]] | np.ndarray,
        labels: Sequence[int] | None = None,
        refine: bool = True,
        *,
        multimask: bool | str = "auto",
        contrast_limits: Sequence[float] | None = None,
        gamma: float = 1.0,
        rgb: bool | None = None,
        key: Hashable | None = None,
        box: Sequence[float] | None = None,
    ) -> SegmentResult:
        """Segment one object from clicks (and/or a box) on one 2D slice.

        Parameters
        ----------
        image : array (H, W) or (H, W, C)
            The slice (any dtype; mapped with ``contrast_limits``).
        points : array-like (N, 2)
            Clicks ``(row, col)`` in image pixels.
        labels : array-like (N,), optional
            1 positive (default), 0 negative.
        refine : bool
            Move each positive click with the shift block first (RP-SAM2);
            ``False`` is plain SAM2.  Negative clicks are never moved.
        multimask : bool or "auto"
            Choose among SAM2's three masks by predicted IoU; ``"auto"`` does
            so for a single click, as SAM2 recommends.
        box : (top, left, bottom, right), optional
            A rectangle in pixels, given to SAM2's prompt encoder as its two
            corners (as SAM2's image predictor does); clicks may then be empty.
        """
        image = np.asarray(image)
        memory_key, signature = self._keys(image, contrast_limits, gamma, rgb, key)
        emb = self._embed(image, memory_key, signature, contrast_limits, gamma, rgb)
        if box is not None and (points is None or len(points) == 0):
            pts, lab = np.zeros((0, 2)), np.zeros(0, np.int64)
        else:
            pts, lab = check_clicks(points, labels, emb.image_hw)
        corners = None if box is None else box_to_normalized(check_box(box, emb.image_hw), emb.image_hw)
        if multimask == "auto":
            multimask = len(pts) == 1 and box is None
        with torch.inference_mode():
            xy = torch.as_tensor(pixels_to_normalized(pts, emb.image_hw), dtype=torch.float64,
                                 device=self.device)
            if refine:
                xy = self._refine_positive(emb, xy, lab, memory_key)
            prompt_xy, prompt_lab = xy, torch.as_tensor(lab, device=self.device)
            if corners is not None:  # SAM2 takes a box as two corner points labelled 2 and 3
                prompt_xy = torch.cat([torch.as_tensor(corners, dtype=xy.dtype, device=self.device), xy])
                prompt_lab = torch.cat([torch.tensor([2, 3], device=self.device), prompt_lab])
            logits, iou = self.backbone.decode(emb, prompt_xy.unsqueeze(0), prompt_lab.unsqueeze(0), bool(multimask))
            mask = logits_to_image(logits, emb.image_hw)[0] > 0
        refined = _pixels_inside(xy.cpu().numpy(), emb.image_hw) if refine else pts.copy()
        refined[lab == 0] = pts[lab == 0]
        return SegmentResult(mask.cpu().numpy(), refined, float(iou[0]), pts, lab)

    def _refine_positive(self, emb: ImageEmbedding, xy: torch.Tensor, lab: np.ndarray,
                         memory_key: Hashable) -> torch.Tensor:
        """``xy`` with its positive clicks moved by the shift block (in chunks: memory stays bounded)."""
        which = torch.nonzero(torch.as_tensor(lab == 1, device=self.device)).flatten()
        if which.numel() == 0:
            return xy
        ctx = self.image_context(emb, memo_key=memory_key)
        xy = xy.clone()
        for start in range(0, which.numel(), _REFINE_CHUNK):
            idx = which[start:start + _REFINE_CHUNK]
            xy[idx] = self.refine_normalized(emb, xy[idx], ctx).to(xy.dtype)
        return xy

    def propagate(self, stack, prompts, *, direction: str = "both", start: int | None = None,
                  stop: int | None = None, progress=None, cancel: CancelFlag | None = None, **options):
        """Follow objects through a stack with SAM2's memory, from prompts on any slices.

        ``prompts`` is an iterable of :class:`~napari_rpsam2.model.prompts.FramePrompt`
        (clicks, a box or a mask per object and slice).  Returns a
        :class:`~napari_rpsam2.model.propagation.PropagationResult` (``labels``
        (N, H, W), ``scores`` (N, objects), …).  ``options``: ``refine``,
        ``stop_threshold``, ``stop_after``, ``contrast_limits``, ``gamma``, ``rgb``,
        ``key``, ``on_frame``; see :func:`napari_rpsam2.model.propagation.propagate`.
        """
        from .propagation import propagate

        return propagate(self, stack, prompts, direction=direction, start=start, stop=stop,
                         progress=progress, cancel=cancel, **options)

    def propagation_session(self, stack, **embed_options):
        """A :class:`~napari_rpsam2.model.propagation.PropagationSession` for runs with corrections."""
        from .propagation import PropagationSession

        return PropagationSession(self, stack, **embed_options)

    def iter_single_clicks(
        self,
        embedding: ImageEmbedding,
        points_rc: np.ndarray,
        refine: bool,
        chunk_size: int | None = None,
        context: ImageContext | None = None,
        multimask: bool = True,
    ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Decode many independent single positive clicks on one image, in chunks.

        Yields ``(index slice, refined xy (b, 2), logits (b, L, L), iou (b,))`` (``L``: the
        backbone's ``low_res_size``);
        memory stays bounded by ``chunk_size`` whatever the number of clicks
        (default: the backbone's ``click_chunk_size``, fastest for its device).
        Runs without gradients (use the backbone directly to train).
        """
        with torch.inference_mode():
            xy = torch.as_tensor(pixels_to_normalized(np.asarray(points_rc), embedding.image_hw),
                                 dtype=torch.float64, device=self.device)
            if refine and context is None:
                context = self.shift_block.image_context(embedding.image_embed)
            chunk_size = chunk_size or self.backbone.click_chunk_size
            for start in range(0, xy.shape[0], chunk_size):
                sl = slice(start, min(xy.shape[0], start + chunk_size))
                pts = xy[sl]
                if refine:
                    pts = self.refine_normalized(embedding, pts, context)
                ones = torch.ones((pts.shape[0], 1), dtype=torch.int, device=self.device)
                logits, iou = self.backbone.decode(embedding, pts.unsqueeze(1), ones, multimask)
                yield sl, pts, logits, iou


def _adapter_text(backbone: SAM2Backbone) -> str:
    if backbone.adapters is None:
        return "none"
    return f"{backbone.adapters.parameter_count():,} trainable parameters"


def _pixels_inside(points_xy: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Pixel ``(row, col)`` of normalized points, kept on the image (frame-change rounding)."""
    refined = normalized_to_pixels(points_xy, image_hw)
    h, w = image_hw
    np.clip(refined[:, 0], 0, h - 1, out=refined[:, 0])
    np.clip(refined[:, 1], 0, w - 1, out=refined[:, 1])
    return refined
