"""Training inputs on disk, read one batch at a time (docs/architecture.md, "Training data streamed").

A training slice needs its SAM2 embedding (about 20 MiB in float32 at SAM2's
1024² input) and, per object, its candidate set, low-resolution target and
shape.  Holding them all would make memory grow with the data set, so the
trainer writes each slice once to a folder — the run's embedding cache
folder, or a temporary one — and reads back only the slices of the current
batch:

* embeddings through :class:`~napari_rpsam2.model.embedding_cache.EmbeddingCache`'s
  disk format, written in float16 (half the bytes; read back as float32, the
  decoder's results stay within the tests' tolerance);
* targets in ``targets/<key>.safetensors`` next to them, keyed by the slice's
  content signature, its objects' masks and the candidate settings.

Every write is atomic, so several processes of one job may share the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._atomic import OutputError, atomic_write, verify_safetensors
from ..model.embedding import ImageEmbedding
from ..model.embedding_cache import EmbeddingCache
from .candidates import mask_digest
from .losses import ObjectShape

__all__ = ["SliceStore", "SliceRef", "ObjectTarget", "SliceTargets", "STORE_DTYPE"]

STORE_DTYPE = "float16"
"""Dtype of the embeddings the trainer writes (float32 entries already there are read as they are)."""

_FORMAT = "napari-rpsam2-training-targets"


@dataclass
class ObjectTarget:
    """Everything the loss needs about one object (computed once)."""

    inside: np.ndarray  # (A, 2) int32 pixels (row, col) to draw clicks from
    candidates: torch.Tensor  # (M, 2) normalized (x, y)
    target: torch.Tensor  # (256, 256) float mask in SAM2's low-res frame
    shape: ObjectShape  # the object at full resolution, for L_out


@dataclass
class SliceTargets:
    """One training image: its embedding and its objects."""

    index: int
    embedding: ImageEmbedding
    objects: list[ObjectTarget]


@dataclass(frozen=True)
class SliceRef:
    """Where one training slice lives in a :class:`SliceStore`."""

    index: int
    signature: str  # the embedding's content key (same as the embedding cache's)
    targets_key: str


class SliceStore:
    """A folder of training slices: embeddings (float16) and object targets.

    Parameters
    ----------
    folder : path
        Created if missing; may be shared with an embedding cache and by the
        processes of one distributed job.
    """

    def __init__(self, folder: str | os.PathLike, dtype: str = STORE_DTYPE) -> None:
        self.folder = Path(folder)
        self.embeddings = EmbeddingCache(1, self.folder, disk_dtype=dtype)
        self.targets_dir = self.folder / "targets"
        self.targets_dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def targets_key(signature: str, object_ids: list[int], masks: list[np.ndarray], settings: dict) -> str:
        """Key of a slice's targets: its content, its objects and the candidate settings."""
        h = hashlib.blake2b(digest_size=20)
        h.update(signature.encode())
        h.update(json.dumps(settings, sort_keys=True).encode())
        for oid, mask in zip(object_ids, masks):
            h.update(f"|{int(oid)}:{mask_digest(mask)}".encode())
        return h.hexdigest()

    # ------------------------------------------------------------ embeddings
    def has_embedding(self, signature: str) -> bool:
        """Whether the embedding with this content key is on disk (not validated)."""
        return self.embeddings._disk_path(signature).is_file()

    def save_embedding(self, signature: str, embedding: ImageEmbedding) -> None:
        """Write an embedding (float16 on disk)."""
        self.embeddings.save_to_disk(signature, embedding)

    def load_embedding(self, signature: str, device) -> ImageEmbedding | None:
        """The embedding as float32 on ``device``, or ``None`` when missing or damaged."""
        return self.embeddings.load_from_disk(signature, device)

    # ------------------------------------------------------------ targets
    def _targets_path(self, key: str) -> Path:
        return self.targets_dir / f"{key}.safetensors"

    def has_targets(self, key: str) -> bool:
        """Whether a slice's targets are on disk (not validated)."""
        return self._targets_path(key).is_file()

    def save_targets(self, key: str, objects: list) -> None:
        """Write the :class:`ObjectTarget` list of one slice."""
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        shapes = []
        for j, obj in enumerate(objects):
            tensors[f"{j}.inside"] = torch.as_tensor(np.ascontiguousarray(obj.inside, dtype=np.int32))
            tensors[f"{j}.candidates"] = obj.candidates.detach().cpu().float().contiguous()
            tensors[f"{j}.target"] = obj.target.detach().cpu().float().contiguous()
            tensors[f"{j}.box"] = obj.shape.box.detach().cpu().to(torch.uint8).contiguous()
            tensors[f"{j}.border"] = obj.shape.border.detach().cpu().float().contiguous()
            shapes.append({"image_hw": list(obj.shape.image_hw), "origin": list(obj.shape.origin)})
        meta = {"format": _FORMAT, "key": key, "shapes": json.dumps(shapes)}
        try:
            atomic_write(self._targets_path(key), lambda tmp: save_file(tensors, tmp, metadata=meta),
                         verify=verify_safetensors)
        except OutputError as err:
            raise OutputError(f"cannot write training data to {self.targets_dir}: {err}") from err

    def load_targets(self, key: str, device) -> list | None:
        """The objects of one slice on ``device``, or ``None`` when missing or damaged."""
        from safetensors import safe_open

        path = self._targets_path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("format") != _FORMAT or meta.get("key") != key:
                    return None
                shapes = json.loads(meta["shapes"])
                objects = []
                for j, info in enumerate(shapes):
                    shape = ObjectShape(tuple(info["image_hw"]), tuple(info["origin"]),
                                        f.get_tensor(f"{j}.box").bool().to(device),
                                        f.get_tensor(f"{j}.border").clone().to(device))
                    objects.append(ObjectTarget(f.get_tensor(f"{j}.inside").numpy().copy(),
                                                f.get_tensor(f"{j}.candidates").clone().to(device),
                                                f.get_tensor(f"{j}.target").clone().to(device), shape))
        except Exception:  # a damaged file is only a miss: the slice is prepared again
            return None
        return objects

    def load(self, ref: SliceRef, device) -> SliceTargets | None:
        """One slice ready for a training step, or ``None`` when a part is missing."""
        objects = self.load_targets(ref.targets_key, device)
        if objects is None:
            return None
        embedding = self.load_embedding(ref.signature, device)
        return None if embedding is None else SliceTargets(ref.index, embedding, objects)
