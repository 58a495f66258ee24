"""Encoding slices through the embedding cache (a part of :class:`~napari_rpsam2.model.RPSAM2`).

A slice is identified in memory by a caller's key (a layer and slice index)
plus the display mapping, or by its content signature, and is found by its
content whatever the key it was stored under; on disk always by content.  One lock makes concurrent clicks on a slice being encoded wait for
that one encode instead of starting another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from .embedding import ImageEmbedding
from .embedding_cache import EmbeddingCache, slice_signature
from .image_adapter import check_image, encoder_picture, split_stack

__all__ = ["CachedEncoding"]

ProgressCallback = Callable[[int, int], None]
CancelFlag = Callable[[], bool]


class CachedEncoding:
    """Mixin: ``embed`` / ``precompute`` / ``is_cached`` for a model with ``backbone`` and ``cache``."""

    backbone: "object"
    cache: EmbeddingCache
    _encode_lock: threading.Lock

    def _keys(self, image: np.ndarray, contrast_limits, gamma, rgb, key) -> tuple[Hashable, str]:
        check_image(image, rgb)  # refuse bad images before hashing them
        signature = slice_signature(image, contrast_limits, gamma, rgb) + "|" + self.backbone.weights_signature
        if key is not None:  # the display mapping decides what SAM2 sees: it is part of the key
            limits = None if contrast_limits is None else tuple(float(c) for c in contrast_limits)
            memory_key = (key, self.backbone.weights_signature, limits, float(gamma), rgb)
        else:
            memory_key = signature
        return memory_key, signature

    def embed(
        self,
        image: np.ndarray,
        *,
        contrast_limits: Sequence[float] | None = None,
        gamma: float = 1.0,
        rgb: bool | None = None,
        key: Hashable | None = None,
        remember: bool = True,
    ) -> ImageEmbedding:
        """Encoder output for one 2D slice, from the cache when possible.

        ``key`` names the slice (e.g. ``(layer_id, index)``) so the cache can
        skip hashing its content; without it the content signature is used.
        ``remember=False``: an embedding not in memory yet is read from disk or
        encoded (and written to the disk cache) but not kept in memory (a
        propagation reads each frame once).
        """
        memory_key, signature = self._keys(np.asarray(image), contrast_limits, gamma, rgb, key)
        return self._embed(image, memory_key, signature, contrast_limits, gamma, rgb, remember)

    def _embed(self, image, memory_key, signature, contrast_limits, gamma, rgb,
               remember: bool = True) -> ImageEmbedding:
        emb = self.cache.get(memory_key)
        if emb is not None:
            return emb
        with self._encode_lock:
            emb = self.cache.get(memory_key)  # another thread may have just made it
            if emb is not None:
                return emb
            emb = self.cache.find(signature)  # the same picture under another key (e.g. another layer)
            if emb is None:
                emb = self.cache.load_from_disk(signature, self.device)
            if emb is None or emb.memory_embed is None:  # entries older than video propagation: redo
                emb = self.encode_uncached(image, contrast_limits=contrast_limits, gamma=gamma, rgb=rgb)
                self.cache.save_to_disk(signature, emb)
            if remember:
                self.cache.put(memory_key, emb, signature)
        return emb

    def encode_uncached(self, image: np.ndarray, *, contrast_limits=None, gamma: float = 1.0,
                        rgb: bool | None = None) -> ImageEmbedding:
        """Run the encoder on one slice, bypassing (and not filling) the cache."""
        picture = encoder_picture(image, contrast_limits, gamma, rgb)
        emb = self.backbone.encode(picture)
        del picture
        image_hw = tuple(int(n) for n in np.shape(image)[:2])
        if emb.image_hw != image_hw:  # a big image was downscaled for the encoder
            emb = ImageEmbedding(emb.image_embed, emb.high_res_feats, image_hw, emb.memory_embed)
        return emb

    def content_signature(self, image: np.ndarray, *, contrast_limits=None, gamma: float = 1.0,
                          rgb: bool | None = None) -> str:
        """The disk cache's key of a slice: its content, display mapping and the backbone's weights."""
        return self._keys(np.asarray(image), contrast_limits, gamma, rgb, None)[1]

    def is_cached(self, image: np.ndarray, *, contrast_limits=None, gamma: float = 1.0,
                  rgb: bool | None = None, key: Hashable | None = None) -> bool:
        """Whether a click on this slice would skip the encoder (memory cache)."""
        memory_key, signature = self._keys(np.asarray(image), contrast_limits, gamma, rgb, key)
        return memory_key in self.cache or self.cache.has_content(signature)

    def precompute(
        self,
        stack: np.ndarray,
        *,
        contrast_limits: Sequence[float] | None = None,
        gamma: float = 1.0,
        rgb: bool | None = None,
        key: Hashable | None = None,
        indices: Sequence[int] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
        within_budget: bool = False,
    ) -> int:
        """Embed every slice of a stack ``(N, H, W[, C])`` (or one image).

        Calls ``progress(done, total)`` after each slice and stops early when
        ``cancel()`` is true.  With ``key``, slice ``i`` is cached under
        ``(key, i)``.  With ``within_budget``, stops once the slices embedded
        so far fill the cache's memory budget, so none of them (the first in
        ``indices`` above all) is evicted by a later one.  Returns the number
        of slices now embedded.
        """
        n, _ = split_stack(stack, rgb)
        is_stack = np.ndim(stack) - (1 if _ else 0) == 3
        order = list(range(n)) if indices is None else [int(i) for i in indices]
        done, total = 0, len(order)
        for i in order:
            if done >= total or (cancel is not None and cancel()):
                break
            plane = np.asarray(stack[i]) if is_stack else np.asarray(stack)
            emb = self.embed(plane, contrast_limits=contrast_limits, gamma=gamma, rgb=rgb,
                             key=None if key is None else (key, i))
            done += 1
            if within_budget:
                total = min(total, max(1, self.cache.max_bytes // max(1, emb.nbytes)))
            if progress is not None:
                progress(done, total)
        return done
