"""Automatic segmentation (RFMedSAM 2): a learned prompt generator proposes every class, SAM2 refines.

Qt-free engine: :mod:`.generator` (the U-Net and its predictions),
:mod:`.training` (Dice + cross-entropy training), :mod:`.checkpoint`
(safetensors + JSON header), :mod:`.components` (regions and boxes),
:mod:`.refine` (SAM2's two refinement stages).
"""

from .checkpoint import load_generator, read_generator_header, save_generator
from .components import Component, components, mask_box
from .generator import GeneratorConfig, PromptGenerator, SlicePrediction
from .training import (
    GeneratorData,
    GeneratorEpoch,
    GeneratorTrainConfig,
    GeneratorTrainResult,
    class_ids_from_instances,
    train_generator,
)

__all__ = [
    "GeneratorConfig", "PromptGenerator", "SlicePrediction", "Component", "components", "mask_box",
    "GeneratorData", "GeneratorTrainConfig", "GeneratorEpoch", "GeneratorTrainResult", "train_generator",
    "class_ids_from_instances", "save_generator", "load_generator", "read_generator_header",
]
