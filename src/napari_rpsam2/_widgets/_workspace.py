"""The one :class:`~napari_rpsam2.app.Workspace` of each napari viewer, shared by all docks.

napari hands each dock a public-only proxy of the viewer, a different object
per dock; the workspace is keyed by the viewer behind the proxy and lives as
long as that viewer does (a weak map: a closed viewer frees its model).
"""

from __future__ import annotations

import weakref
from typing import Any

from ..app import Workspace

__all__ = ["workspace_for", "unwrap"]

_WORKSPACES: "weakref.WeakKeyDictionary[Any, Workspace]" = weakref.WeakKeyDictionary()


def unwrap(obj: Any) -> Any:
    """The object behind napari's public-only proxy (a viewer or a layer), or ``obj`` itself."""
    return getattr(obj, "__wrapped__", obj)


def workspace_for(viewer: Any) -> Workspace:
    """The workspace of ``viewer`` (created on first use); the same for every dock of that viewer."""
    key = unwrap(viewer)
    found = _WORKSPACES.get(key)
    if found is None:
        found = _WORKSPACES[key] = Workspace()
    return found
