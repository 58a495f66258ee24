"""Fine-tune SAM2's adapters on annotated images (the use case of ``rpsam2 finetune``)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import jobs
from ..model.adapters import AdapterConfig, SAM2Adapters, save_adapters
from ..training.adapters import FinetuneConfig, FinetuneEpoch, finetune_adapters

__all__ = ["finetune_from_folders", "finetune_from_arrays", "FinetuneOutcome"]


def finetune_from_folders(
    model, images_dir, labels_dir, out: str | os.PathLike, *, class_map=None, merge_gap: float | None = None,
    config: FinetuneConfig = FinetuneConfig(), adapter_config: AdapterConfig = AdapterConfig(),
    progress: jobs.Progress | None = None, on_epoch: Callable[[FinetuneEpoch], None] | None = None,
    cancel: jobs.Cancel | None = None,
) -> list[FinetuneEpoch]:
    """Train adapters on ``model``'s SAM2 and write them (adapters only) to ``out``.

    Starts from the adapters already loaded on the model when there are some,
    else from fresh zero-initialised ones.  The model keeps the trained adapters.
    """
    from ..training.data import DEFAULT_MERGE_GAP, stack_from_folders

    stack = stack_from_folders(images_dir, labels_dir, class_map=class_map,
                               merge_gap=DEFAULT_MERGE_GAP if merge_gap is None else merge_gap)
    backbone = model.backbone
    if backbone.adapters is None:
        backbone.use_adapters(SAM2Adapters(backbone.model, adapter_config))
    history = finetune_adapters(backbone, stack, config, progress=progress, on_epoch=on_epoch, cancel=cancel)
    training = {"images": len(stack), "objects": len(stack.objects()), "epochs": config.epochs, "lr": config.lr,
                "clicks": config.clicks, "box_jitter": config.box_jitter, "seed": config.seed,
                "clips": config.clips, "clip_length": config.clip_length if config.clips else None,
                "final_clip_loss": history[-1].clip_loss if history else None,
                "final_loss": history[-1].loss if history else None,
                "sam2_weights": backbone._plain_signature}
    save_adapters(out, backbone.adapters, backbone.name, training=training)
    return history


@dataclass
class FinetuneOutcome:
    """What :func:`finetune_from_arrays` wrote: the adapter file and the loss per epoch."""

    path: Path
    history: list[FinetuneEpoch]


def _training_copy(backbone):
    """A private copy of ``backbone``'s SAM2 with its own adapters (the loaded ones copied, else fresh).

    Training it never changes the model other docks are using, nor what the
    embedding cache holds under its signature.
    """
    from ..model.backbone import SAM2Backbone

    own = backbone.adapters
    sam2 = copy.deepcopy(backbone.model)  # the shared model is only read
    if own is not None:  # the copy carries the loaded adapters' hooks: the copy gets its own adapters instead
        for module in sam2.modules():
            module._forward_hooks.clear()
    twin = SAM2Backbone(sam2, backbone.spec, backbone._plain_signature)
    return twin, own


def finetune_from_arrays(
    model, image: np.ndarray, labels: np.ndarray, out: str | os.PathLike, *, rgb: bool,
    contrast_limits: Sequence[float] | None = None, gamma: float = 1.0, merge_gap: float | None = None,
    config: FinetuneConfig = FinetuneConfig(), adapter_config: AdapterConfig = AdapterConfig(),
    progress: jobs.Progress | None = None, on_epoch: Callable[[FinetuneEpoch], None] | None = None,
    cancel: jobs.Cancel | None = None,
) -> FinetuneOutcome:
    """Fine-tune adapters on an image stack and its labels as a viewer holds them; write them to ``out``.

    Trains on a private copy of ``model``'s SAM2 (starting from its loaded
    adapters, if any): ``model`` itself is unchanged, so a cancelled or failed
    run leaves nothing behind, and ``out`` is written (atomically) only when
    every epoch ran.  Load the file on the model to use the adapters.
    """
    from ..model.adapters import SAM2Adapters
    from ..training.data import DEFAULT_MERGE_GAP, stack_from_arrays
    from .train import label_array

    spatial = np.shape(image)[:-1] if rgb else np.shape(image)
    stack = stack_from_arrays(np.asarray(image), label_array(np.asarray(labels), spatial), rgb=rgb,
                              contrast_limits=contrast_limits, gamma=gamma,
                              merge_gap=DEFAULT_MERGE_GAP if merge_gap is None else merge_gap)
    twin, own = _training_copy(model.backbone)
    adapters = SAM2Adapters(twin.model, own.config if own is not None else adapter_config)
    if own is not None:
        adapters.load_state_dict(own.state_dict())
    twin.use_adapters(adapters)
    history = finetune_adapters(twin, stack, config, progress=progress, on_epoch=on_epoch, cancel=cancel)
    training = {"images": len(stack), "objects": len(stack.objects()), "epochs": config.epochs, "lr": config.lr,
                "clicks": config.clicks, "box_jitter": config.box_jitter, "seed": config.seed,
                "final_loss": history[-1].loss if history else None, "sam2_weights": twin._plain_signature}
    path = save_adapters(out, adapters, twin.name, training=training)
    return FinetuneOutcome(Path(path), history)
