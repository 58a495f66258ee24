"""Qt-free model code: SAM2 backbone wrapper, shift block, embeddings, checkpoints."""

from .backbone import SAM2Backbone, pick_device
from .checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint
from .embedding import ImageEmbedding
from .embedding_cache import EmbeddingCache, slice_signature
from .image_adapter import ImageError, to_rgb_float
from .prompts import FramePrompt, PromptError
from .propagation import PropagationResult, PropagationSession
from .rpsam2 import RPSAM2, SegmentResult
from .shift_block import ShiftBlock, ShiftBlockConfig
from .weights import BACKBONES, WeightsError

__all__ = [
    "BACKBONES", "CheckpointError", "EmbeddingCache", "FramePrompt",
    "PropagationResult", "PropagationSession", "ImageEmbedding", "ImageError",
    "PromptError", "RPSAM2", "SAM2Backbone", "SegmentResult", "ShiftBlock", "ShiftBlockConfig",
    "WeightsError", "load_checkpoint", "pick_device", "read_header", "save_checkpoint",
    "slice_signature", "to_rgb_float",
]
