"""Fine-tune SAM2's adapters on annotated images (the use case of ``rpsam2 finetune``)."""

from __future__ import annotations

import os
from collections.abc import Callable

from .. import jobs
from ..model.adapters import AdapterConfig, SAM2Adapters, save_adapters
from ..training.adapters import FinetuneConfig, FinetuneEpoch, finetune_adapters

__all__ = ["finetune_from_folders"]


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
