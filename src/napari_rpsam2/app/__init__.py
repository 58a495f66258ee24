"""Application layer: the use cases both front ends (CLI and dock widgets) call.

Qt-free and napari-free.  Long jobs follow :mod:`napari_rpsam2.jobs`.
"""

from .workspace import NoModelError, Workspace, WorkspaceEvents

__all__ = ["NoModelError", "Workspace", "WorkspaceEvents"]
