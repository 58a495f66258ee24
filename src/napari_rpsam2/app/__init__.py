"""Application layer: the use cases both front ends (CLI and dock widgets) call.

Qt-free and napari-free.  Long jobs follow :mod:`napari_rpsam2.jobs`.
"""

from .click_commit import CommitError, CommitRecord
from .click_session import Click, ClickSession, ClickSessionEvents, Preview, SegmentRequest
from .workspace import NoModelError, Workspace, WorkspaceEvents

__all__ = ["NoModelError", "Workspace", "WorkspaceEvents", "Click", "ClickSession", "ClickSessionEvents",
           "CommitError", "CommitRecord", "Preview", "SegmentRequest"]
