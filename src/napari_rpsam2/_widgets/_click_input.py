"""From the person's hand to the click session: canvas clicks and edits of the clicks layer.

A canvas click (press and release without moving) on the clicks layer in
pan-zoom mode becomes a session click; Shift makes it negative.  napari never
adds points itself in that mode, so its habit of copying the selected point's
features into ``feature_defaults`` cannot decide a click's polarity.  Edits
made with napari's own tools (add, select, move, delete) are read back from
the layer; every point added by napari gets its polarity from the modifiers of
the press that made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..app.click_session import Click, ClickSession
from ._click_layers import ClickLayers
from ._slicing import SliceError

__all__ = ["ClickInput", "NEGATIVE_MODIFIER", "DRAG_PIXELS"]

NEGATIVE_MODIFIER = "Shift"
DRAG_PIXELS = 3.0
"""A press that moves further than this (canvas pixels) is a pan, not a click."""


class ClickInput:
    """Connects one image's clicks layer to its session.

    Parameters
    ----------
    layers : ClickLayers
    session : ClickSession
    current_index : callable
        The slice index on screen (raises :class:`SliceError` when the view is unusable).
    on_error : callable
        Shows a message.
    """

    def __init__(self, layers: ClickLayers, session: ClickSession, current_index: Callable[[], tuple[int, ...]],
                 on_error: Callable[[str], None]) -> None:
        self.layers = layers
        self.session = session
        self._current_index = current_index
        self._on_error = on_error
        self._press_negative = False
        prompts = layers.prompts
        prompts.mouse_drag_callbacks.insert(0, self._on_mouse)
        prompts.events.data.connect(self._on_layer_edit)
        session.events.clicks_changed.connect(self._mirror)

    def disconnect(self) -> None:
        """Stop listening (the dock closes); the layers and the session stay."""
        prompts = self.layers.prompts
        if self._on_mouse in prompts.mouse_drag_callbacks:
            prompts.mouse_drag_callbacks.remove(self._on_mouse)
        prompts.events.data.disconnect(self._on_layer_edit)
        self.session.events.clicks_changed.disconnect(self._mirror)

    def _mirror(self, *_: Any) -> None:
        self.layers.show_clicks(self.session)

    # ------------------------------------------------------------------ canvas clicks
    def _on_mouse(self, layer: Any, event: Any):
        """napari drag callback: a press-release without movement in pan-zoom mode adds a click."""
        negative = NEGATIVE_MODIFIER in event.modifiers
        self._press_negative = negative  # for napari's own add mode, read in _on_layer_edit
        if layer.mode != "pan_zoom" or event.button != 1:
            return
        start = np.asarray(event.pos, dtype=float)
        moved = False
        yield
        while event.type == "mouse_move":
            moved = moved or float(np.linalg.norm(np.asarray(event.pos, dtype=float) - start)) > DRAG_PIXELS
            yield
        if not moved:
            self.click_at_world(event.position, negative)

    def click_at_world(self, world: Any, negative: bool) -> None:
        """Add a click at a world position on the slice on screen."""
        image = self.layers.image
        try:
            index = self._current_index()
        except SliceError as err:
            self._on_error(str(err))
            return
        data = np.asarray(image.world_to_data(world), dtype=float)
        self.session.add_click(index, float(data[-2]), float(data[-1]), positive=not negative)

    # ------------------------------------------------------------------ edits with napari's tools
    def _on_layer_edit(self, event: Any) -> None:
        if self.layers.mirroring:
            return
        action = str(getattr(event, "action", "changed"))
        if action.endswith(("adding", "removing", "changing")):
            return
        points = self.layers.read_clicks()
        if action.endswith("added"):  # napari's add mode: polarity from the press, never from feature_defaults
            added = {int(i) % len(points) for i in getattr(event, "data_indices", ()) or ()}  # napari uses -1...
            points = [(ix, Click(c.row, c.col, not self._press_negative) if i in added else c)
                      for i, (ix, c) in enumerate(points)]
        found: dict[tuple[int, ...], list[Click]] = {}
        for index, click in points:
            found.setdefault(index, []).append(click)
        lead = self.session.shape[:-2]
        for index in set(found) | set(self.session.slices()):
            if len(index) == len(lead) and all(0 <= i < n for i, n in zip(index, lead)):
                self.session.set_clicks(index, found.get(index, []))
        self._mirror()  # explicit polarity and colours for every point; outside points removed
