"""Commit and undo for the click widget (a mixin: needs ``viewer``, ``status``, ``target_picker``...)."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels

from ._logic import CommitError, CommitRecord, plan_commit, plan_undo
from ._slicing import SliceError, layer_shape

__all__ = ["CommitMixin"]


class CommitMixin:
    """Commit the preview into a Labels layer under the next free id; undo commits exactly."""

    viewer: Any
    status: Any
    target_picker: Any
    _undo: list[tuple[Labels, CommitRecord]]

    def _target(self, image: Image) -> Labels:
        target = self.target_picker.layer()
        if target is None:
            target = self.viewer.add_labels(np.zeros(layer_shape(image), np.int32), name=f"{image.name} objects",
                                            scale=image.scale, translate=image.translate)
            self.target_picker.set_layer(target)
        return target

    def commit(self) -> None:
        """Write the preview into the target Labels layer under the next free id."""
        if self.busy:
            self.status.error("Still segmenting the latest clicks; commit again in a moment.")
            return
        if self._shown is None:
            self.status.error("Nothing to commit: click on an object first.")
            return
        try:
            sl = self.current_slice()
            index, mask = self._shown
            target = self._target(sl.layer)
            record = plan_commit(np.asarray(target.data), index, mask)
        except (SliceError, CommitError) as err:
            self.status.error(f"Cannot commit: {err}")
            return
        target.data_setitem(record.indices, record.label_id)
        self._undo.append((target, record))
        self.clear()
        self.status.info(f"Committed object {record.label_id} ({record.size} px) into '{target.name}'.")

    def undo(self) -> None:
        """Undo the last commit (only its pixels that still hold its id)."""
        if not self._undo:
            self.status.error("No commit to undo.")
            return
        target, record = self._undo.pop()
        if target not in self.viewer.layers:
            self.status.error(f"The Labels layer of the last commit ('{target.name}') was deleted; nothing undone.")
            return
        target.data_setitem(plan_undo(np.asarray(target.data), record), 0)
        self.status.info(f"Undid object {record.label_id} in '{target.name}'.")

