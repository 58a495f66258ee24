"""Evaluation: metrics (Dice, HD95) and the 10-seed click protocol.

Import ``napari_rpsam2.evaluation.sensitivity`` and ``.report`` directly; they
are not loaded here so this package stays light.
"""

from .metrics import dice, hd95
from .protocol import evaluate

__all__ = ["dice", "evaluate", "hd95"]
