"""One model, one embedding cache and one candidate cache, shared by every front end of a viewer.

The click, heatmap and training docks of one napari viewer (and a script or
the CLI) hold one :class:`Workspace`.  No dock looks another up: each reads
the workspace's model and listens to :attr:`Workspace.events`.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from psygnal import Signal, SignalGroup

from ..model.embedding_cache import EmbeddingCache
from ..training.candidates import CandidateCache

if TYPE_CHECKING:
    from ..model import RPSAM2

__all__ = ["Workspace", "WorkspaceEvents", "NoModelError", "default_cache_dir"]

DEFAULT_CACHE_BYTES = 2 << 30
DEFAULT_DISK_CACHE_BYTES = 10 << 30
CACHE_DIR_VARIABLE = "NAPARI_RPSAM2_CACHE_DIR"
"""Environment variable: the disk embedding cache's folder, or ``off`` for none."""


def default_cache_dir() -> Path | None:
    """Folder of the viewer's disk embedding cache: ``$NAPARI_RPSAM2_CACHE_DIR``, else the user's cache folder.

    ``NAPARI_RPSAM2_CACHE_DIR=off`` (or empty) turns the disk cache off.
    """
    value = os.environ.get(CACHE_DIR_VARIABLE)
    if value is not None:
        return None if value.strip().lower() in ("", "off", "none", "0") else Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-rpsam2")) / "embeddings"


class NoModelError(RuntimeError):
    """A job needs a model and none is loaded; the message says where to load one."""


class WorkspaceEvents(SignalGroup):
    """Signals of a :class:`Workspace` (emitted in the thread that made the change)."""

    model_changed = Signal(object)
    """A new model is in use (argument: the model)."""
    shift_block_changed = Signal(object)
    """The model's shift block was replaced (argument: the model)."""


class Workspace:
    """The model and caches one viewer's front ends share.

    Parameters
    ----------
    cache_bytes : int
        Memory budget of the embedding cache.
    cache_dir : path, optional
        Folder of the disk embedding cache (a folder that cannot be made only warns: no disk cache then).
    disk_cache_bytes : int
        Size limit of the disk cache; the least recently used embeddings go first.
    cache : EmbeddingCache, optional
        Use this embedding cache (e.g. one shared by several viewers) instead
        of making one from ``cache_bytes`` and ``cache_dir``.
    background_embedding : bool
        Whether click docks start with "Embed other slices in the background"
        ticked.
    """

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES, cache_dir: str | os.PathLike | None = None,
                 disk_cache_bytes: int = DEFAULT_DISK_CACHE_BYTES, *, cache: EmbeddingCache | None = None,
                 background_embedding: bool = True) -> None:
        self.events = WorkspaceEvents()
        if cache is not None:
            self.cache = cache
        else:
            try:
                self.cache = EmbeddingCache(cache_bytes, cache_dir)
            except OSError as err:
                warnings.warn(f"no disk embedding cache ({cache_dir}: {err.strerror or err}); "
                              f"embeddings are kept in memory only", stacklevel=2)
                self.cache = EmbeddingCache(cache_bytes)
            self.cache.disk_max_bytes = disk_cache_bytes
        self.background_embedding = bool(background_embedding)
        self.candidates = CandidateCache()
        self.click_sessions: dict = {}
        """Click session of each image (by the image layer's id), kept while a dock is closed and reopened."""
        self.work_folders: dict = {}
        """Work-folder state of each image (by the image layer's id), one for all docks of the viewer."""
        self.running_jobs: set = set()
        """The cancel flags of the docks' jobs that are running (they use the model)."""
        self._model: RPSAM2 | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> "RPSAM2 | None":
        """The model in use, or ``None``."""
        return self._model

    def require_model(self) -> "RPSAM2":
        """The model, or :class:`NoModelError` saying how to get one."""
        if self._model is None:
            raise NoModelError("no model loaded: choose the SAM2 weights in the click widget's Model box "
                               "and press Load model ('random' works offline, for trying things out)")
        return self._model

    def load_model(self, backbone: str = "sam2.1_hiera_tiny", sam2_weights: str | os.PathLike = "random",
                   shift_block: str | os.PathLike | None = None, device: str = "auto", *,
                   seed: int = 0, adapters: str | os.PathLike | None = None) -> "RPSAM2":
        """Build a model on this workspace's embedding cache (slow: call it from a worker).

        ``adapters``: a SAM2 adapter file (``rpsam2 finetune``) hooked onto SAM2, so every dock's
        click, propagation, one-shot and automatic runs use the fine-tuned SAM2.  Its header is
        checked first: a file made for another backbone is refused before SAM2 is built.
        The caller publishes the model with :meth:`set_model`, in the thread that owns the views.
        """
        from ..model import RPSAM2
        from ..model.adapters import check_adapter_file
        from ..model.weights import resolve_backbone

        if adapters is not None:
            check_adapter_file(adapters, resolve_backbone(backbone).name)
        model = RPSAM2.load(backbone, sam2_weights, shift_block, device, seed=seed, adapters=adapters)
        if adapters is not None:
            model.backbone.adapter_header = {**model.backbone.adapter_header, "file": str(adapters)}
        model.cache = self.cache  # embeddings are keyed by backbone weights and adapters: sharing is safe
        return model

    def set_model(self, model: "RPSAM2") -> None:
        """Use ``model`` from now on; it adopts this workspace's embedding cache."""
        with self._lock:
            model.cache = self.cache
            self._model = model
        self.events.model_changed.emit(model)

    def load_shift_block(self, path: str | os.PathLike) -> dict:
        """Load a shift-block checkpoint into the model; returns its header."""
        model = self.require_model()
        header = model.load_shift_block(path)
        self.events.shift_block_changed.emit(model)
        return header

    def load_adapters(self, path: str | os.PathLike) -> dict:
        """Hook the SAM2 adapter file ``path`` onto the model in use (replacing any); returns its header.

        A file made for another backbone is refused (:class:`~napari_rpsam2.model.checkpoint.CheckpointError`)
        and the model stays as it was.  The backbone's weights signature, part
        of every embedding-cache key, then names the adapters, so embeddings
        made without them are not reused; cached grid results of the old
        model are dropped.  Refused (``ValueError``) while a dock's job runs.  ``model_changed`` tells every dock (the Load model
        box shows the file in its Adapters field).
        """
        model = self.require_model()
        if self.running_jobs:
            raise ValueError("a job is running in a dock and uses SAM2: wait for it or cancel it, then use the "
                             "adapters")
        header = model.backbone.load_adapters(path)
        model.backbone.adapter_header = {**(model.backbone.adapter_header or {}), "file": str(path)}
        self.candidates.clear()
        self.events.model_changed.emit(model)
        return header

    def use_shift_block(self, block, header: dict | None = None) -> None:
        """Use a shift block that is already in memory (e.g. just trained)."""
        model = self.require_model()
        model.set_shift_block(block, header)
        self.events.shift_block_changed.emit(model)
