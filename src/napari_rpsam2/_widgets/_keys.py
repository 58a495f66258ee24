"""Viewer key bindings that a dock adds while it is open and removes when it closes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import napari

__all__ = ["bind_keys", "unbind_keys"]


def bind_keys(viewer: "napari.viewer.Viewer", actions: dict[str, Callable[[], None]]) -> dict[str, Callable]:
    """Bind each key to its action on ``viewer`` (overwriting); returns the bound functions."""
    funcs: dict[str, Callable] = {}
    for key, action in actions.items():
        def run(_viewer: Any, _action: Callable[[], None] = action) -> None:
            _action()
        funcs[key] = run
        viewer.bind_key(key, run, overwrite=True)
    return funcs


def unbind_keys(viewer: "napari.viewer.Viewer", funcs: dict[str, Callable]) -> None:
    """Unbind the keys of :func:`bind_keys`, unless something else re-bound them since."""
    bound = list(viewer.keymap.values())
    for key, func in funcs.items():
        if any(f is func for f in bound):
            viewer.bind_key(key, None)
