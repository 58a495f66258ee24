"""The one :class:`~napari_rpsam2.app.Workspace` of each napari viewer, shared by all docks.

napari hands each dock a public-only proxy of the viewer, a different object
per dock; the workspace is keyed by the viewer behind the proxy and lives as
long as that viewer does (a weak map: a closed viewer frees its model).
"""

from __future__ import annotations

import weakref
from typing import Any

from ..app import Workspace
from ..app.workspace import default_cache_dir

__all__ = ["workspace_for", "unwrap"]

_WORKSPACES: "weakref.WeakKeyDictionary[Any, Workspace]" = weakref.WeakKeyDictionary()


def unwrap(obj: Any) -> Any:
    """The object behind napari's public-only proxy (a viewer or a layer), or ``obj`` itself."""
    return getattr(obj, "__wrapped__", obj)


def workspace_for(viewer: Any) -> Workspace:
    """The workspace of ``viewer`` (created on first use); the same for every dock of that viewer.

    Its embeddings are also kept on disk (:func:`~napari_rpsam2.app.workspace.default_cache_dir`, keyed by
    each slice's content, the model's weights and the contrast settings), so a restarted napari finds them.
    """
    key = unwrap(viewer)
    found = _WORKSPACES.get(key)
    if found is None:
        found = _WORKSPACES[key] = Workspace(cache_dir=default_cache_dir())
    return found
