"""The one :class:`~napari_rpsam2.app.Workspace` of each napari viewer, shared by all docks.

napari hands each dock a public-only proxy of the viewer, a different object
per dock; the workspace is keyed by the viewer behind the proxy and lives as
long as that viewer does (a weak map: a closed viewer frees its model).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from ..app import Workspace

__all__ = ["workspace_for", "unwrap", "set_workspace_factory"]

_WORKSPACES: "weakref.WeakKeyDictionary[Any, Workspace]" = weakref.WeakKeyDictionary()
_FACTORY: Callable[[], Workspace] = Workspace


def set_workspace_factory(factory: Callable[[], Workspace] | None) -> None:
    """Make the workspaces of viewers seen from now on with ``factory`` (``None``: a plain ``Workspace()``).

    For embedding napari-rpsam2 in another application or test suite, e.g. to
    give every viewer one shared embedding cache (``Workspace(cache=...)``).
    """
    global _FACTORY
    _FACTORY = Workspace if factory is None else factory


def unwrap(obj: Any) -> Any:
    """The object behind napari's public-only proxy (a viewer or a layer), or ``obj`` itself."""
    return getattr(obj, "__wrapped__", obj)


def workspace_for(viewer: Any) -> Workspace:
    """The workspace of ``viewer`` (created on first use); the same for every dock of that viewer."""
    key = unwrap(viewer)
    found = _WORKSPACES.get(key)
    if found is None:
        found = _WORKSPACES[key] = _FACTORY()
    return found
