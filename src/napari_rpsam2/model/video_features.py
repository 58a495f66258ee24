"""SAM2's own video predictor, fed frame by frame from our embedding cache.

:class:`CachedVideoPredictor` is ``sam2``'s :class:`~sam2.sam2_video_predictor.SAM2VideoPredictor`
(memory encoder, memory attention, ``track_step``: all SAM2's code) with one
change: the image features of frame ``t`` come from a callable instead of a
folder of JPEGs decoded into memory.  The callable reads one slice of any
array-like stack (numpy, dask, zarr) and returns its cached
:class:`~napari_rpsam2.model.embedding.ImageEmbedding`, so frames are encoded
on demand, once, under the cache's memory budget, and never all held at once.

The predictor shares the backbone's modules (no second copy of the weights);
only the settings ``sam2.build_sam.build_sam2_video_predictor`` changes for
video differ.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor

from .embedding import ImageEmbedding

__all__ = ["CachedVideoPredictor", "FrameFeatures", "VIDEO_SETTINGS"]

FrameFeatures = Callable[[int], ImageEmbedding]
"""``frame index -> ImageEmbedding`` (with ``memory_embed``), read and encoded on demand."""

VIDEO_SETTINGS = {
    # what build_sam2_video_predictor sets on top of the image model's config
    "binarize_mask_from_pts_for_mem_enc": True,
    "fill_hole_area": 8,
    # SAM2VideoPredictor's own options: a correction click on a tracked frame makes that
    # frame a conditioning frame, so it holds through later propagations
    "non_overlap_masks": False,
    "clear_non_cond_mem_around_input": False,
    "add_all_frames_to_correct_as_cond": True,
}


class CachedVideoPredictor(SAM2VideoPredictor):
    """SAM2's video predictor reading image features from an embedding cache.

    Build with :meth:`sharing` (never through ``__init__``).
    """

    @classmethod
    def sharing(cls, sam2_model: torch.nn.Module, **settings) -> "CachedVideoPredictor":
        """A predictor that shares every module and weight of ``sam2_model`` (a ``SAM2Base``).

        ``settings`` override :data:`VIDEO_SETTINGS`.
        """
        predictor = cls.__new__(cls)
        predictor.__dict__.update(sam2_model.__dict__)  # same sub-modules and parameters, no copy
        for name, value in {**VIDEO_SETTINGS, **settings}.items():
            setattr(predictor, name, value)
        return predictor

    def memory_window(self) -> int:
        """How many frames back SAM2's memory attention looks (mask memories and object pointers)."""
        return max(self.num_maskmem * self.memory_temporal_stride_for_eval, self.max_obj_ptrs_in_encoder)

    def new_state(self, num_frames: int, image_hw: tuple[int, int], features: FrameFeatures) -> dict:
        """An inference state like ``init_state``'s, without any frame loaded."""
        device = self.device
        return {
            "frame_features": features, "position_encodings": {},
            "num_frames": int(num_frames), "offload_video_to_cpu": False, "offload_state_to_cpu": False,
            "video_height": int(image_hw[0]), "video_width": int(image_hw[1]),
            "device": device, "storage_device": device,
            "point_inputs_per_obj": {}, "mask_inputs_per_obj": {}, "cached_features": {}, "constants": {},
            "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(), "obj_ids": [],
            "output_dict_per_obj": {}, "temp_output_dict_per_obj": {}, "frames_tracked_per_obj": {},
        }

    def _position_encodings(self, inference_state: dict, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """The encoder neck's sine position encodings: they depend on the feature sizes only."""
        sizes = tuple(tuple(m.shape[-2:]) for m in maps)
        cache = inference_state["position_encodings"]
        if sizes not in cache:
            encode = self.image_encoder.neck.position_encoding
            cache[sizes] = [encode(m).to(m.dtype) for m in maps]
        return cache[sizes]

    def _run_single_frame_inference(self, *args, **kwargs):
        """SAM2's step; on a CPU the bf16 memory is widened again (see :func:`_widen_on_cpu`)."""
        out, masks = super()._run_single_frame_inference(*args, **kwargs)
        out["maskmem_features"] = _widen_on_cpu(out["maskmem_features"])
        return out, masks

    def _run_memory_encoder(self, *args, **kwargs):
        """SAM2's memory encoder; on a CPU the bf16 memory is widened again."""
        features, pos = super()._run_memory_encoder(*args, **kwargs)
        return _widen_on_cpu(features), pos

    def _get_image_feature(self, inference_state: dict, frame_idx: int, batch_size: int):
        """Features of one frame from the embedding cache (overrides SAM2's JPEG-tensor lookup)."""
        emb = inference_state["frame_features"](int(frame_idx)).to(inference_state["device"])
        if emb.memory_embed is None:
            raise ValueError("this embedding has no memory features; encode the frame again")
        maps = [*emb.high_res_feats, emb.memory_embed]
        pos = self._position_encodings(inference_state, maps)
        backbone_out = {
            "backbone_fpn": [m.expand(batch_size, -1, -1, -1) for m in maps],
            "vision_pos_enc": [p.expand(batch_size, -1, -1, -1) for p in pos],
        }
        # the first item (the picture) is not used by tracking; there is none here
        return (None, *self._prepare_backbone_features(backbone_out))


def _widen_on_cpu(features: torch.Tensor | None) -> torch.Tensor | None:
    """bf16 memory back to float32 on a CPU (an exact conversion).

    SAM2 stores memories in bf16 and relies on CUDA autocast, or on object
    pointers (float32) concatenated with them, to get float32 back.  A frame
    with memories but no pointer yet (an object prompted later than the frame)
    would hand bf16 to float32 weights on a CPU; this makes that case work and
    changes nothing else (the values are SAM2's bf16-rounded ones).
    """
    if features is None or features.device.type != "cpu" or features.dtype != torch.bfloat16:
        return features
    return features.float()
