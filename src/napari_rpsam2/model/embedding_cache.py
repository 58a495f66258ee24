"""Embeddings kept between clicks: an LRU memory budget plus an optional disk cache.

Memory entries are keyed by ``(image identity, backbone)``; the identity is a
caller's key (a layer id and slice index) or, by default, the slice's content
signature.  An entry stored with its content signature is also found by it
(:meth:`EmbeddingCache.find`), so a second layer showing the same picture
shares the embedding.  Disk entries are always keyed by content: a reopened
stack is not encoded again, an edited one is.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import OutputError, atomic_write, verify_safetensors
from .embedding import ImageEmbedding

__all__ = ["EmbeddingCache", "CacheStats", "CacheWarning", "slice_signature", "stored_like"]

_DISK_FORMAT = "napari-rpsam2-embedding"
_DISK_VERSION = "1"


def slice_signature(
    image: np.ndarray,
    contrast_limits: Sequence[float] | None,
    gamma: float = 1.0,
    rgb: bool | None = None,
) -> str:
    """Content signature of one slice and the display mapping applied to it."""
    arr = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{arr.shape}|{arr.dtype.str}|{contrast_limits and [float(c) for c in contrast_limits]}"
             f"|{gamma}|{rgb}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


@dataclass
class CacheStats:
    """Counters a user (or a test) can read to see what the cache did."""

    hits: int = 0
    misses: int = 0
    content_hits: int = 0
    evictions: int = 0
    disk_hits: int = 0
    disk_writes: int = 0
    disk_errors: int = 0


def _as_float32(tensor):
    """A float32 copy (never a view of the memory map)."""
    import torch

    return tensor.clone() if tensor.dtype == torch.float32 else tensor.to(torch.float32)


def stored_like(embedding: ImageEmbedding, dtype: str | None) -> ImageEmbedding:
    """``embedding`` as it reads back from a disk cache writing ``dtype`` (float32 again)."""
    import torch

    if dtype in (None, "float32"):
        return embedding
    half = getattr(torch, dtype)
    tensors = {k: v.detach().to(half).to(torch.float32) for k, v in embedding.tensors().items()}
    return ImageEmbedding.from_tensors(tensors, embedding.image_hw)


class CacheWarning(UserWarning):
    """The disk cache could not be written; clicks keep working from memory."""


class EmbeddingCache:
    """Least-recently-used embedding store with a byte budget.

    Parameters
    ----------
    max_bytes : int
        Memory budget; the least recently used embeddings go first.  One
        SAM2 embedding is about 16 MiB in float32.  At least one entry is kept.
    disk_dir : path, optional
        Folder for embeddings written to disk (one safetensors file each).
    disk_dtype : str, optional
        ``"float16"`` or ``"bfloat16"`` halves the files (training streams
        thousands of them); ``None`` keeps float32.  Entries are always read
        back as float32, whatever dtype wrote them.
    """

    def __init__(self, max_bytes: int = 1 << 30, disk_dir: str | os.PathLike | None = None,
                 disk_dtype: str | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if disk_dtype not in (None, "float32", "float16", "bfloat16"):
            raise ValueError(f"disk_dtype must be float32, float16 or bfloat16, got {disk_dtype!r}")
        self.max_bytes = int(max_bytes)
        self.disk_dtype = disk_dtype
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        if self.disk_dir is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
        self.disk_max_bytes: int | None = None
        """Size limit of the disk cache; the least recently used files go first (``None``: no limit)."""
        self.stats = CacheStats()
        self._entries: OrderedDict[Hashable, ImageEmbedding] = OrderedDict()
        self._by_content: dict[str, Hashable] = {}
        self._content_of: dict[Hashable, str] = {}
        self._holders: dict[int, int] = {}  # id(embedding) → keys holding it (bytes count once)
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def nbytes(self) -> int:
        """Bytes held in memory now."""
        return self._bytes

    def get(self, key: Hashable) -> ImageEmbedding | None:
        """The embedding under ``key`` (marked most recently used), or ``None``."""
        with self._lock:
            emb = self._entries.get(key)
            if emb is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return emb

    def has_content(self, signature: str) -> bool:
        """Whether an embedding with this content signature is in memory (under any key)."""
        with self._lock:
            key = self._by_content.get(signature)
            return key is not None and key in self._entries

    def find(self, signature: str) -> ImageEmbedding | None:
        """The embedding stored with this content signature under any key, or ``None``."""
        with self._lock:
            key = self._by_content.get(signature)
            emb = None if key is None else self._entries.get(key)
            if emb is not None:
                self._entries.move_to_end(key)
                self.stats.content_hits += 1
            return emb

    def put(self, key: Hashable, embedding: ImageEmbedding, signature: str | None = None) -> None:
        """Store ``embedding`` (findable by its content ``signature`` when given); evict beyond the budget.

        One embedding held under several keys counts once against the budget.
        """
        with self._lock:
            self._drop(key)
            self._entries[key] = embedding
            held = self._holders.get(id(embedding), 0)
            self._holders[id(embedding)] = held + 1
            if not held:
                self._bytes += embedding.nbytes
            if signature is not None:
                self._by_content[signature] = key
                self._content_of[key] = signature
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                self._drop(next(iter(self._entries)))
                self.stats.evictions += 1

    def _drop(self, key: Hashable) -> None:
        """Forget ``key`` (lock held)."""
        emb = self._entries.pop(key, None)
        if emb is None:
            return
        held = self._holders.pop(id(emb)) - 1
        if held:
            self._holders[id(emb)] = held
        else:
            self._bytes -= emb.nbytes
        signature = self._content_of.pop(key, None)
        if signature is not None and self._by_content.get(signature) == key:
            del self._by_content[signature]

    def clear(self) -> None:
        """Forget every in-memory embedding (the disk cache stays)."""
        with self._lock:
            self._entries.clear()
            self._by_content.clear()
            self._content_of.clear()
            self._holders.clear()
            self._bytes = 0

    # ------------------------------------------------------------------ disk
    def _disk_path(self, signature: str) -> Path:
        assert self.disk_dir is not None
        # the signature holds '|' and ':' (not allowed in Windows file names): hash it
        name = hashlib.blake2b(signature.encode(), digest_size=20).hexdigest()
        return self.disk_dir / f"{name}.safetensors"

    def load_from_disk(self, signature: str, device) -> ImageEmbedding | None:
        """Read the embedding with this content signature, if the disk has a good one."""
        if self.disk_dir is None:
            return None
        path = self._disk_path(signature)
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            verify_safetensors(path)
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("format") != _DISK_FORMAT or meta.get("version") != _DISK_VERSION:
                    return None
                if meta.get("signature") != signature:
                    return None
                # copy out of the memory map (a file changed later must not crash the viewer: SIGBUS);
                # half-precision entries come back as float32, what the decoder computes in
                tensors = {k: _as_float32(f.get_tensor(k)) for k in f.keys()}
            hw = tuple(json.loads(meta["image_hw"]))
        except Exception:  # a damaged cache file is only a miss; it gets rewritten
            return None
        self.stats.disk_hits += 1
        try:  # a hit makes the file recently used, for the size limit
            os.utime(path)
        except OSError:
            pass
        return ImageEmbedding.from_tensors(tensors, hw).to(device)

    def save_to_disk(self, signature: str, embedding: ImageEmbedding) -> None:
        """Write atomically (temp file, then rename); failures leave no partial file.

        A failed write (full disk, read-only folder) only warns
        (:class:`CacheWarning`): the embedding stays usable from memory.
        """
        if self.disk_dir is None:
            return
        from safetensors.torch import save_file

        import torch

        dtype = getattr(torch, self.disk_dtype or "float32")
        tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in embedding.tensors().items()}
        meta = {"format": _DISK_FORMAT, "version": _DISK_VERSION, "signature": signature,
                "image_hw": json.dumps(list(embedding.image_hw)), "dtype": str(dtype).removeprefix("torch.")}
        try:
            atomic_write(self._disk_path(signature), lambda tmp: save_file(tensors, tmp, metadata=meta),
                         verify=verify_safetensors)
        except OutputError as err:  # the disk cache is optional: keep working from memory
            self.stats.disk_errors += 1
            warnings.warn(f"embedding not saved to the disk cache {self.disk_dir}: {err}",
                          CacheWarning, stacklevel=2)
            return
        self.stats.disk_writes += 1
        if self.disk_max_bytes is not None:
            self.trim_disk(self.disk_max_bytes)

    def trim_disk(self, max_bytes: int) -> int:
        """Delete the least recently used disk entries until the folder holds at most ``max_bytes``.

        Returns the number of files deleted.  Files another process deletes meanwhile are skipped.
        """
        if self.disk_dir is None:
            return 0
        files = []
        for path in self.disk_dir.glob("*.safetensors"):
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        total, deleted = sum(f[1] for f in files), 0
        for _, size, path in sorted(files, key=lambda f: f[0]):
            if total <= max_bytes:
                break
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            deleted += 1
        return deleted
