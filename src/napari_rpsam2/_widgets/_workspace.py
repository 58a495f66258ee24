"""The one :class:`~napari_rpsam2.app.Workspace` of each napari viewer, shared by all docks.

napari hands each dock a public-only proxy of the viewer, a different object
per dock; the workspace is keyed by the viewer behind the proxy and lives as
long as that viewer does (a weak map: a closed viewer frees its model).
"""

from __future__ import annotations

import weakref
from typing import Any

from ..app import Workspace

__all__ = ["workspace_for", "real_viewer"]

_WORKSPACES: "weakref.WeakKeyDictionary[Any, Workspace]" = weakref.WeakKeyDictionary()


def real_viewer(viewer: Any) -> Any:
    """The viewer behind napari's public-only proxy (the viewer itself when not proxied)."""
    return getattr(viewer, "__wrapped__", viewer)


def workspace_for(viewer: Any) -> Workspace:
    """The workspace of ``viewer`` (created on first use); the same for every dock of that viewer."""
    key = real_viewer(viewer)
    found = _WORKSPACES.get(key)
    if found is None:
        found = _WORKSPACES[key] = Workspace()
    return found
