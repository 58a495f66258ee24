"""Train a shift block: the one use case behind the training dock and ``rpsam2 train``.

Both front ends build their data with :func:`data_from_arrays` (a viewer's
layers) or :func:`data_from_folders` (the CLI) and train with :func:`train`,
so the choices (which slices count, the automatic validation split, the fresh
block's seed, progress stages) cannot diverge:

* only slices with at least one object are used;
* without separate validation data, ``val_fraction`` of the annotated slices
  (at least one) are held out for validation when there are two or more;
* the trained block is a fresh one (seeded with ``config.seed``) on the given
  model's frozen backbone and embedding cache; the given model is left alone.

Progress follows :mod:`napari_rpsam2.jobs`: stages ``"embeddings"`` (slices),
``"candidates"`` (grid clicks, reported per chunk of clicks), ``"validation
embeddings"`` (before the first epoch), ``"validation"`` (slices, each epoch)
and ``"epoch"``.  Under ``torchrun`` each process reports its own share.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import jobs
from ..evaluation.grid_dice import grid_points
from ..model.embedding_cache import slice_signature
from ..training.candidates import CandidateCache
from ..training.data import AnnotatedStack, DataError, split_by_slice, stack_from_arrays
from ..training.sources import stack_from_paths

if TYPE_CHECKING:
    from ..model import RPSAM2
    from ..training.trainer import EpochLog, TrainConfig, TrainResult

__all__ = ["TrainingData", "Trained", "label_array", "data_from_arrays", "data_from_folders", "train", "train_from_arrays",
           "reuse_embeddings", "would_replace", "VAL_FRACTION"]

VAL_FRACTION = 0.2
"""Share of the annotated slices held out for validation when none is given."""


@dataclass
class TrainingData:
    """What a training run learns from and is validated on.

    Attributes
    ----------
    train, val : AnnotatedStack
        Annotated slices only; ``val`` is ``None`` when nothing could be held out.
    validation : str
        How ``val`` was chosen, in words (shown by both front ends).
    """

    train: AnnotatedStack
    val: AnnotatedStack | None
    validation: str


@dataclass
class Trained:
    """A finished (or stopped) run: the engine's result and the model holding the best block."""

    result: "TrainResult"
    model: "RPSAM2"
    data: TrainingData


def _merge_kw(merge_gap: float | None) -> dict[str, Any]:
    """``merge_gap`` for the data readers; ``None`` keeps their default (``DEFAULT_MERGE_GAP``)."""
    return {} if merge_gap is None else {"merge_gap": float(merge_gap)}


def label_array(labels: np.ndarray, spatial: tuple[int, ...], name: str = "labels") -> np.ndarray:
    """Instance labels of shape ``spatial`` from a label array as a user may have opened it.

    A label PNG saved as RGB with three equal channels (as Cataract-1k ships
    them) arrives as ``(..., 3)`` or ``(..., 4)``: its first channel is used.

    Raises
    ------
    DataError
        Differing colour channels or a shape that does not fit, with a hint.
    """
    arr = np.asarray(labels)
    if arr.shape == tuple(spatial):
        return arr
    if arr.ndim == len(spatial) + 1 and arr.shape[:-1] == tuple(spatial) and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0]
        raise DataError(f"'{name}' is a colour image with differing channels; labels need one id per pixel "
                        "(a grey image, or RGB with three equal channels)")
    raise DataError(f"'{name}' has shape {arr.shape} but the image needs {tuple(spatial)} (same slices, height "
                    "and width); pick the labels made for this image")


def _annotated(stack: AnnotatedStack) -> tuple[AnnotatedStack, list[int]]:
    keep = sorted({o.slice_index for o in stack.objects()})
    return (stack if keep == list(range(len(stack))) else stack.subset(keep)), keep


def _split(stack: AnnotatedStack, val: AnnotatedStack | None, val_fraction: float, seed: int) -> TrainingData:
    train, _ = _annotated(stack)
    if val is not None:
        return TrainingData(train, _annotated(val)[0], f"separate validation data ({len(val)} slices)")
    if val_fraction > 0 and len(train) >= 2:
        train, held = split_by_slice(train, val_fraction, seed)
        names = ", ".join(held.names[:5]) + ("…" if len(held) > 5 else "")
        return TrainingData(train, held, f"{len(held)} of {len(train) + len(held)} annotated slices held out "
                                         f"for validation ({names})")
    why = "one annotated slice" if len(train) < 2 else "no split asked for"
    return TrainingData(train, None, f"no validation ({why}); the best epoch is the lowest training loss")


def data_from_arrays(image: np.ndarray, labels: np.ndarray, *, rgb: bool, contrast_limits=None, gamma: float = 1.0,
                     val: tuple[np.ndarray, np.ndarray, bool] | None = None, val_fraction: float = VAL_FRACTION,
                     seed: int = 0, merge_gap: float | None = None) -> TrainingData:
    """Training data from an image ``(N, H, W[, C])`` or ``(H, W[, C])`` and its labels.

    ``val`` is an optional separate ``(image, labels, rgb)``; ``contrast_limits``
    and ``gamma`` are the display mapping the encoder should see (a layer's).
    ``merge_gap``: binary-label regions closer than this many pixels are one
    object (``None``: the readers' default, 12 px; ``0``: every region apart).
    """
    spatial = np.shape(image)[:-1] if rgb else np.shape(image)
    stack = stack_from_arrays(image, label_array(labels, spatial), rgb=rgb, contrast_limits=contrast_limits,
                              gamma=gamma, **_merge_kw(merge_gap))
    held = None
    if val is not None:
        v_img, v_lab, v_rgb = val
        v_spatial = np.shape(v_img)[:-1] if v_rgb else np.shape(v_img)
        held = stack_from_arrays(v_img, label_array(v_lab, v_spatial, "validation labels"), rgb=v_rgb,
                                 contrast_limits=contrast_limits, gamma=gamma, **_merge_kw(merge_gap))
    return _split(stack, held, val_fraction, seed)


def data_from_folders(images_dir: str | os.PathLike, labels_dir: str | os.PathLike, *, class_map=None,
                      val_images_dir: str | os.PathLike | None = None,
                      val_labels_dir: str | os.PathLike | None = None, val_fraction: float = VAL_FRACTION,
                      seed: int = 0, merge_gap: float | None = None, window=None) -> TrainingData:
    """Training data from images and labels on disk (warnings kept on the stacks).

    Any input :func:`napari_rpsam2.io.open_images` reads, with labels as
    :func:`napari_rpsam2.training.sources.stack_from_paths` pairs them; two
    folders are paired by file name.  ``window``: a volume's CT window.
    """
    kw = {"class_map": class_map, "window": window, **_merge_kw(merge_gap)}
    stack = stack_from_paths(images_dir, labels_dir, **kw)
    held = None
    if (val_images_dir is None) != (val_labels_dir is None):
        raise DataError("give both validation folders (images and labels), or neither")
    if val_images_dir is not None:
        held = stack_from_paths(val_images_dir, val_labels_dir, **kw)
    return _split(stack, held, val_fraction, seed)


def reuse_embeddings(model: "RPSAM2", slices: Iterable[tuple[np.ndarray, Hashable]], *, rgb: bool,
                     contrast_limits=None, gamma: float = 1.0) -> int:
    """Let training find the slices a viewer already embedded under its own cache keys.

    ``slices`` holds ``(plane, key)`` pairs: the click dock caches a slice
    under a key naming it (layer and index); training looks slices up by
    content.  Each plane cached under its key with the same display mapping
    (contrast limits and gamma) is also filed under its content key, so it is
    not encoded again.  Returns how many were found.
    """
    found = 0
    limits = None if contrast_limits is None else [float(c) for c in contrast_limits]
    for plane, key in slices:
        plane = np.asarray(plane)
        if not model.is_cached(plane, contrast_limits=limits, gamma=gamma, rgb=rgb, key=key):
            continue
        emb = model.embed(plane, contrast_limits=limits, gamma=gamma, rgb=rgb, key=key)
        content_key = slice_signature(plane, limits, gamma, rgb) + "|" + model.backbone.weights_signature
        if content_key not in model.cache:
            model.cache.put(content_key, emb)
        found += 1
    return found


class _ChunkProgress:
    """A candidate cache that reports each chunk of grid clicks as stage ``"candidates"``."""

    def __init__(self, inner: CandidateCache, total: int, progress: jobs.Progress | None,
                 cancel: jobs.Cancel | None) -> None:
        self.inner, self.total, self.done = inner, total, 0
        self.progress, self.cancel = progress, cancel

    def grid_dice(self, model, embedding, mask, **kw):
        start = self.done

        def step(done: int, _total: int) -> None:
            jobs.report(self.progress, "candidates", min(self.total, start + done), self.total)

        grid = self.inner.grid_dice(model, embedding, mask, progress=step, cancel=self.cancel, **kw)
        self.done = min(self.total, start + len(grid.points))
        jobs.report(self.progress, "candidates", self.done, self.total)
        return grid


def train(model: "RPSAM2", data: TrainingData, out: str | os.PathLike, config: "TrainConfig", *,
          candidates: CandidateCache | None = None, resume: str | os.PathLike | None = None,
          log_path: str | os.PathLike | None = None, progress: jobs.Progress | None = None,
          on_epoch: Callable[["EpochLog"], None] | None = None, cancel: jobs.Cancel | None = None,
          overwrite: bool = False) -> Trained:
    """Train a fresh shift block on ``model``'s frozen backbone; keep the best checkpoint at ``out``.

    Parameters
    ----------
    model : RPSAM2
        Lends its backbone and embedding cache; its own shift block is not touched.
    data : TrainingData
    candidates : CandidateCache, optional
        Grid-Dice results to reuse (a workspace's), else a fresh cache.
    overwrite : bool
        Replace a checkpoint of another run at ``out`` (else :class:`DataError`;
        see :func:`would_replace` to ask first).
    progress, cancel
        The long-job contract; a stop keeps the best checkpoint so far
        (``result.cancelled`` is true).
    """
    import torch

    from ..model import RPSAM2, ShiftBlock
    from ..training.trainer import train_shift_block

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        block = ShiftBlock()
    trained = RPSAM2(model.backbone, block, cache=model.cache)
    from ..training import ddp
    from ..training.prepare import prep_shard, training_indices

    cache = candidates if candidates is not None else CandidateCache()
    mine = set(prep_shard(training_indices(data.train), *ddp.rank_and_world()))  # this process's share
    total = sum(len(grid_points(data.train.object_mask(o), config.grid_stride)) for o in data.train.objects()
                if o.slice_index in mine)
    reporting = _ChunkProgress(cache, total, progress, cancel)

    def engine_progress(stage: str, done: int, total: int) -> None:
        if stage != "candidates":  # reported per chunk of grid clicks instead
            jobs.report(progress, stage, done, total)

    result = train_shift_block(trained, data.train, out, config, val=data.val, resume=resume, log_path=log_path,
                               progress=engine_progress, on_epoch=on_epoch, cancel=cancel,
                               candidate_cache=reporting, overwrite=overwrite)  # type: ignore[arg-type]
    return Trained(result, trained, data)


def train_from_arrays(model: "RPSAM2", image: np.ndarray, labels: np.ndarray, out: str | os.PathLike,
                      config: "TrainConfig", *, rgb: bool, contrast_limits=None, gamma: float = 1.0,
                      val: tuple[np.ndarray, np.ndarray, bool] | None = None,
                      slice_keys: Callable[[int], Hashable] | None = None, candidates: CandidateCache | None = None,
                      merge_gap: float | None = None, val_fraction: float = VAL_FRACTION,
                      progress: jobs.Progress | None = None, on_epoch: Callable[["EpochLog"], None] | None = None,
                      cancel: jobs.Cancel | None = None, overwrite: bool = False) -> Trained:
    """:func:`data_from_arrays` then :func:`train`, reusing embeddings a viewer already has.

    ``slice_keys(i)`` is the cache key under which a viewer embedded slice
    ``i`` of ``image`` (see :func:`reuse_embeddings`); ``candidates`` the
    workspace's grid-Dice cache.  Everything runs in the calling thread.
    """
    data = data_from_arrays(image, labels, rgb=rgb, contrast_limits=contrast_limits, gamma=gamma, val=val,
                            val_fraction=val_fraction, seed=config.seed, merge_gap=merge_gap)
    if slice_keys is not None:
        spatial = np.shape(image)[:-1] if rgb else np.shape(image)
        lab = label_array(labels, spatial)
        if len(spatial) == 2:
            pairs: Iterable = [(image, slice_keys(0))] if lab.any() else []
        else:
            pairs = ((image[i], slice_keys(i)) for i in range(spatial[0]) if np.any(lab[i]))
        reuse_embeddings(model, pairs, rgb=rgb, contrast_limits=contrast_limits, gamma=gamma)
    return train(model, data, out, config, candidates=candidates, progress=progress, on_epoch=on_epoch,
                 cancel=cancel, overwrite=overwrite)


def would_replace(out: str | os.PathLike, resume: str | os.PathLike | None = None) -> bool:
    """Whether training to ``out`` would replace a checkpoint of another run (a front end asks first)."""
    from ..training.run_state import refuse_replacing

    try:
        refuse_replacing(out, resume=resume)
    except DataError:
        return True
    return False
