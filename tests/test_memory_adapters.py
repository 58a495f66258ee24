"""Memory-attention adapters: zero-initialised they leave propagation bit-identical; on clips they learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from small_sam2 import small_backbone

from napari_rpsam2.model.adapters import AdapterConfig, SAM2Adapters
from napari_rpsam2.model.prompts import FramePrompt
from napari_rpsam2.sample_data import make_instrument_stack
from napari_rpsam2.training.adapters import FinetuneConfig, finetune_adapters, object_prompts
from napari_rpsam2.training.data import stack_from_arrays
from napari_rpsam2.training.memory_adapters import ClipTrainer, object_clips

MEMORY_ONLY = AdapterConfig(encoder=False, neck=False, decoder=False)


def _propagation_logits(model, stack, prompt) -> dict:
    """Per-slice logits of object 1 tracked forward from its box on slice 0 (SAM2's video predictor path)."""
    logits: dict[int, np.ndarray] = {}
    from napari_rpsam2.model.propagation import PropagationSession

    session = PropagationSession(model, stack, rgb=True)
    session.add([prompt], refine=False)
    session.run("forward", on_logits=lambda t, by_object: logits.__setitem__(t, by_object[1]))
    return logits


def test_zero_memory_adapters_leave_propagation_bit_identical_and_trained_ones_change_it(model, instrument_stack):
    image, labels = instrument_stack
    rows, cols = np.nonzero(labels[0] == 1)
    prompt = FramePrompt(0, 1, box=(rows.min(), cols.min(), rows.max(), cols.max()))
    plain = _propagation_logits(model, image, prompt)
    assert sorted(plain) == [0, 1, 2]
    adapters = SAM2Adapters(model.backbone.model)  # every place, zero-initialised
    model.backbone.use_adapters(adapters)
    try:
        zero = _propagation_logits(model, image, prompt)
        with torch.no_grad():
            for p in adapters.adapters["memory_0"].parameters():
                p.add_(0.1 * torch.randn_like(p))
        model.backbone.use_adapters(adapters)
        moved = _propagation_logits(model, image, prompt)
    finally:
        model.backbone.use_adapters(None)
    for t in plain:
        assert np.array_equal(zero[t], plain[t]), f"slice {t}: zero adapters changed SAM2's logits"
    assert np.array_equal(moved[0], plain[0])  # the prompted slice has no memory to attend to
    assert not np.array_equal(moved[1], plain[1]) and not np.array_equal(moved[2], plain[2])


def test_clips_follow_each_annotated_object_forward():
    labels = np.zeros((4, 8, 8), np.int32)
    labels[0, :2, :2] = 1
    labels[2, 4:, 4:] = 2
    labels[3, :2, :2] = 1
    stack = stack_from_arrays(np.zeros((4, 8, 8), np.float32), labels)
    clips = object_clips(stack, 3)
    assert [(c.slices, c.object_id) for c in clips] == [((0, 1, 2), 1), ((2, 3), 2)]  # slice 3's object: no clip


@pytest.fixture(scope="module")
def small_sam2():
    """SAM2.1-tiny built for a 256² input (a training-loss test).  A module's own copy: its tests train adapters on it."""
    return small_backbone()


def test_memory_adapters_learn_on_clips_of_a_fixed_batch(small_sam2):
    image, labels = make_instrument_stack(n_slices=3, shape=(128, 160))
    stack = stack_from_arrays(image, labels)
    adapters = SAM2Adapters(small_sam2.model, MEMORY_ONLY)
    small_sam2.use_adapters(adapters)
    try:
        pictures = [im.astype(np.float32) / 255 for im in image]
        trainer = ClipTrainer(small_sam2, stack, pictures, keep_embeddings=True)
        clip = object_clips(stack, 3)[0]
        box, clicks = object_prompts(labels[0] == clip.object_id, np.random.default_rng(3), 1, 0.0)

        def loss() -> float:
            with torch.no_grad():
                return float(trainer.loss(clip, box, clicks))

        before = loss()
        history = finetune_adapters(small_sam2, stack, FinetuneConfig(epochs=5, lr=1e-2, box_jitter=0.0, clips=True))
        after = loss()
        trained = {n for n, p in adapters.named_parameters() if p.abs().sum() > 0 and "point_out" in n}
    finally:
        small_sam2.use_adapters(None)
    assert trained and all(n.startswith("adapters.memory_") for n in trained)
    assert all(h.clip_loss is not None and h.clip_loss == h.loss for h in history)  # clip steps only
    assert after < 0.9 * before and history[-1].loss < 0.9 * history[0].loss, (before, after,
                                                                              [h.loss for h in history])


def test_memory_adapters_alone_without_clips_are_refused(small_sam2):
    image, labels = make_instrument_stack(n_slices=2, shape=(64, 80))
    stack = stack_from_arrays(image, labels)
    small_sam2.use_adapters(SAM2Adapters(small_sam2.model, MEMORY_ONLY))
    try:
        with pytest.raises(ValueError, match="clips"):
            finetune_adapters(small_sam2, stack, FinetuneConfig(epochs=1))
    finally:
        small_sam2.use_adapters(None)
