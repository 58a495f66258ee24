"""Embeddings and candidate targets of the training slices, written to a :class:`SliceStore`.

Each process of a job prepares only its own share of the slices
(:func:`prep_shard`); the store folder is shared, so every slice is encoded
once in the whole job and any process can read any slice afterwards.  An
embedding is taken, in this order, from the store, from the model's memory
cache (slices a viewer already embedded), from the model's disk cache, and
only then from the encoder (counted in :attr:`Preparer.counts`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from ..jobs import Cancelled
from ..model.coords import pixels_to_normalized
from .candidates import CandidateCache
from .data import AnnotatedStack
from .losses import object_shape
from .slice_store import ObjectTarget, SliceRef, SliceStore, SliceTargets

__all__ = ["LOW_RES", "Preparer", "object_target", "prep_shard", "training_indices"]

LOW_RES = 256
"""SAM2's low-res mask side at its 1024 input (the model's ``backbone.low_res_size`` is used when known)."""


def training_indices(stack: AnnotatedStack) -> list[int]:
    """The slices of ``stack`` with at least one object, in order."""
    return sorted({o.slice_index for o in stack.objects()})


def prep_shard(indices: list[int], rank: int, world: int) -> list[int]:
    """The slices one process prepares: every ``world``-th one starting at ``rank``."""
    return list(indices[rank::world])


def object_target(mask: np.ndarray, grid, config, device: torch.device, low_res: int = LOW_RES) -> ObjectTarget:
    """The loss's view of one object: its pixels, candidate set, low-res target (``low_res``²) and shape."""
    hw = mask.shape
    low = F.interpolate(torch.as_tensor(mask, dtype=torch.float32)[None, None], size=(low_res, low_res),
                        mode="bilinear", align_corners=False, antialias=True)[0, 0]
    cands = pixels_to_normalized(grid.candidates(config.epsilon), hw)
    return ObjectTarget(np.argwhere(mask).astype(np.int32),
                        torch.as_tensor(cands, dtype=torch.float32, device=device),
                        low.to(device), object_shape(mask, device))


class Preparer:
    """Writes training slices of one stack into a store, and reads them back.

    ``counts``: ``encoded`` (encoder runs), ``reused`` (embeddings found
    ready), ``targets`` (slices whose candidates were computed here).
    """

    def __init__(self, model, stack: AnnotatedStack, config, store: SliceStore,
                 candidate_cache: CandidateCache | None = None) -> None:
        self.model, self.stack, self.config, self.store = model, stack, config, store
        self.cache = candidate_cache if candidate_cache is not None else CandidateCache()
        self.counts = {"encoded": 0, "reused": 0, "targets": 0}
        self._objects: dict[int, list] = {}
        for obj in stack.objects():
            self._objects.setdefault(obj.slice_index, []).append(obj)

    def _image(self, i: int) -> np.ndarray:
        return np.asarray(self.stack.images[i])

    def objects_of(self, i: int) -> list:
        """The annotated objects on slice ``i``."""
        return self._objects.get(i, [])

    def ref(self, i: int) -> SliceRef:
        """Where slice ``i`` is (or will be) in the store."""
        st = self.stack
        signature = self.model.content_signature(self._image(i), contrast_limits=st.contrast_limits,
                                                 gamma=st.gamma, rgb=st.rgb)
        objs = self.objects_of(i)
        settings = {"stride": self.config.grid_stride, "epsilon": self.config.epsilon, "low_res": self.model.backbone.low_res_size}
        key = SliceStore.targets_key(signature, [o.object_id for o in objs], [st.object_mask(o) for o in objs],
                                     settings)
        return SliceRef(i, signature, key)

    def embed(self, ref: SliceRef) -> None:
        """Put slice ``ref.index``'s embedding into the store (encoding it only when nowhere else)."""
        if self.store.has_embedding(ref.signature):
            self.counts["reused"] += 1
            return
        emb = self.model.cache.find(ref.signature)  # a viewer's slice, whatever key it is filed under
        if emb is None:
            emb = self.model.cache.load_from_disk(ref.signature, "cpu")
        if emb is None:
            st = self.stack
            emb = self.model.encode_uncached(self._image(ref.index), contrast_limits=st.contrast_limits,
                                             gamma=st.gamma, rgb=st.rgb)
            self.counts["encoded"] += 1
        else:
            self.counts["reused"] += 1
        self.store.save_embedding(ref.signature, emb)

    def targets(self, ref: SliceRef, on_object: Callable[[], None] | None = None, *, force: bool = False) -> None:
        """Compute and store the candidate targets of slice ``ref.index`` (from the stored embedding)."""
        if not force and self.store.has_targets(ref.targets_key):
            for _ in self.objects_of(ref.index):
                if on_object is not None:
                    on_object()
            return
        emb = self.store.load_embedding(ref.signature, self.model.device)
        if emb is None:  # damaged or written elsewhere: make it here
            self.embed_again(ref)
            emb = self.store.load_embedding(ref.signature, self.model.device)
        out = []
        for obj in self.objects_of(ref.index):
            mask = self.stack.object_mask(obj)
            grid = self.cache.grid_dice(self.model, emb, mask, image_signature=ref.signature,
                                        object_id=obj.object_id, stride=self.config.grid_stride, refine=False)
            out.append(object_target(mask, grid, self.config, torch.device("cpu"), self.model.backbone.low_res_size))
            if on_object is not None:
                on_object()
        self.store.save_targets(ref.targets_key, out)
        self.counts["targets"] += 1

    def embed_again(self, ref: SliceRef) -> None:
        """Encode a slice whose stored embedding cannot be read."""
        st = self.stack
        emb = self.model.encode_uncached(self._image(ref.index), contrast_limits=st.contrast_limits,
                                         gamma=st.gamma, rgb=st.rgb)
        self.counts["encoded"] += 1
        self.store.save_embedding(ref.signature, emb)

    def prepare(self, refs: list[SliceRef], *, progress=None, cancel=None) -> None:
        """Embeddings, then candidates, of ``refs``: stages ``"embeddings"`` and ``"candidates"``."""
        for done, ref in enumerate(refs, 1):
            if cancel is not None and cancel():
                raise Cancelled("training was cancelled while embedding")
            self.embed(ref)
            if progress is not None:
                progress("embeddings", done, len(refs))
        total = sum(len(self.objects_of(r.index)) for r in refs)
        done = [0]

        def one_object() -> None:
            done[0] += 1
            if progress is not None:
                progress("candidates", done[0], total)
            if cancel is not None and cancel() and done[0] < total:
                raise Cancelled("training was cancelled while computing candidates")

        for ref in refs:
            if cancel is not None and cancel():
                raise Cancelled("training was cancelled while computing candidates")
            self.targets(ref, one_object)

    def load(self, ref: SliceRef) -> SliceTargets:
        """One slice for a training step, made here if the store lacks it (e.g. no shared folder)."""
        found = self.store.load(ref, self.model.device)
        if found is None:
            if self.store.load_embedding(ref.signature, "cpu") is None:
                self.embed_again(ref)
            self.targets(ref, force=True)
            found = self.store.load(ref, self.model.device)
        if found is None:
            raise OSError(f"cannot read training slice {ref.index} back from {self.store.folder}")
        return found
