"""napari-rpsam2: stable point-prompt segmentation with SAM2 (RP-SAM2).

The compute library (``napari_rpsam2.model``, ``.training``, ``.evaluation``)
imports neither Qt nor napari; the dock widgets live in ``._widgets``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-rpsam2")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["RPSAM2", "SegmentResult", "__version__"]


def __getattr__(name: str):
    """``RPSAM2`` and ``SegmentResult`` are imported on first use, so napari's readers do not load torch."""
    if name in ("RPSAM2", "SegmentResult"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
