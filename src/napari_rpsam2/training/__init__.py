"""Training the shift block: annotated stacks, candidate points, losses, the trainer."""

from .candidates import Cancelled, CandidateCache, GridDice, grid_dice, grid_points
from .data import AnnotatedObject, AnnotatedStack, DataError, split_by_slice, stack_from_arrays, stack_from_folders
from .losses import compound_loss, distance_loss, outside_loss, soft_dice_loss
from .trainer import EpochLog, TrainConfig, TrainResult, train_shift_block

__all__ = [
    "AnnotatedObject", "AnnotatedStack", "CandidateCache", "Cancelled", "DataError", "EpochLog", "GridDice",
    "TrainConfig", "TrainResult", "compound_loss", "distance_loss", "grid_dice", "grid_points",
    "outside_loss", "soft_dice_loss", "split_by_slice", "stack_from_arrays", "stack_from_folders",
    "train_shift_block",
]
