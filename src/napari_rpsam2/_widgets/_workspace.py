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
from ..app.workspace import default_cache_dir

__all__ = ["workspace_for", "unwrap", "set_workspace_factory"]

_WORKSPACES: "weakref.WeakKeyDictionary[Any, Workspace]" = weakref.WeakKeyDictionary()
def _default_workspace() -> Workspace:
    """A viewer's workspace: embeddings kept on disk too (:func:`~napari_rpsam2.app.workspace.default_cache_dir`)."""
    return Workspace(cache_dir=default_cache_dir())


_FACTORY: Callable[[], Workspace] = _default_workspace


def set_workspace_factory(factory: Callable[[], Workspace] | None) -> None:
    """Make the workspaces of viewers seen from now on with ``factory`` (``None``: the default one).

    For embedding napari-rpsam2 in another application or test suite, e.g. to
    give every viewer one shared embedding cache (``Workspace(cache=...)``).
    """
    global _FACTORY
    _FACTORY = _default_workspace if factory is None else factory


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
        found = _WORKSPACES[key] = _FACTORY()
    return found
