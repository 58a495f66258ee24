"""One annotated slice → prompts for a whole stack: PerSAM, P²SAM and Med-PerSAM on SAM2.

Engine layer: imports ``model`` and ``evaluation``, never ``app``, the CLI,
the widgets, Qt or napari.
"""

from .medpersam import MedPerSAM
from .method import ObjectResult, OneShotMethod, SliceResult
from .p2sam import P2SAM
from .persam import PerSAM
from .registration import WarpConfig
from .stack import METHODS, make_method, segment_stack

__all__ = ["PerSAM", "P2SAM", "MedPerSAM", "WarpConfig", "ObjectResult", "SliceResult", "OneShotMethod",
           "METHODS", "make_method", "segment_stack"]
