"""SAM2's own video predictor with a test model's weights, for the propagation-equivalence tests.

The predictor is built by ``build_sam2_video_predictor`` from the model's
config at the model's input size (plus any hydra ``overrides``), with SAM2's
``add_all_frames_to_correct_as_cond`` (our predictor's setting), and the
model's state dict.  Its frames are replaced by our encoder's input tensors,
so both sides see identical pixels.  On a CPU its bf16 memories are widened to
float32 exactly as ours are (:func:`~napari_rpsam2.model.video_features._widen_on_cpu`),
which only matters for a frame with memories but no object pointer yet.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_rpsam2.model.image_adapter import encoder_picture
from napari_rpsam2.model.video_features import _widen_on_cpu

__all__ = ["sam2_points", "sam2_video_reference"]


def sam2_video_reference(model, frames: np.ndarray, folder, overrides: tuple[str, ...] = ()):
    """``(predictor, inference_state)`` of SAM2's own video predictor on ``frames`` (JPEGs written to ``folder``)."""
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg")
    with torch.random.fork_rng(devices=[]):
        predictor = build_sam2_video_predictor(
            model.backbone.spec.config, None, device="cpu",
            hydra_overrides_extra=[f"++model.image_size={model.backbone.input_size}", *overrides,
                                   "++model.add_all_frames_to_correct_as_cond=true"])
    predictor.load_state_dict(model.backbone.model.state_dict())
    encoded: dict[bytes, dict] = {}  # the encoder is deterministic: memoise it to save time
    forward_image, encode, step = (predictor.forward_image, predictor._run_memory_encoder,
                                   predictor._run_single_frame_inference)

    def memo_forward_image(img):
        key = img.numpy().tobytes()
        if key not in encoded:
            encoded[key] = forward_image(img)
        return encoded[key]

    def run_memory_encoder(*a, **k):
        features, pos = encode(*a, **k)
        return _widen_on_cpu(features), pos

    def run_single_frame_inference(*a, **k):
        out, masks = step(*a, **k)
        out["maskmem_features"] = _widen_on_cpu(out["maskmem_features"])
        return out, masks

    predictor.forward_image = memo_forward_image
    predictor._run_memory_encoder = run_memory_encoder
    predictor._run_single_frame_inference = run_single_frame_inference
    with torch.inference_mode():
        state = predictor.init_state(str(folder))
        state["images"] = torch.cat([model.backbone.preprocess(encoder_picture(f, None, 1.0, None))
                                     for f in frames])
        state["cached_features"] = {}  # init_state encoded frame 0 from its JPEG
    return predictor, state


def sam2_points(predictor, points, size: int) -> list[list[float]]:
    """(row, col) pixel centres of a ``size``-pixel frame in SAM2's own convention (coords.py: x = (col + 0.5) / W)."""
    half = 0.5 * size / predictor.image_size
    return [[c + 0.5 - half, r + 0.5 - half] for r, c in points]
