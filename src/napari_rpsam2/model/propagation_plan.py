"""Which frames a propagation visits, in which order, and when it drops an object.

Pure Python (no torch): the passes of each direction, each one exactly one
call of SAM2's ``SAM2VideoPredictor.propagate_in_video``, and the stop rule
counted per object from its own prompts.

===========  =====================================================================================
direction    passes (``first``/``last``: earliest/latest prompted slice of any object)
===========  =====================================================================================
forward      ``propagate_in_video(state, start_frame_idx=first, max_frame_num_to_track=stop-1-first)``
backward     ``propagate_in_video(state, start_frame_idx=last, max_frame_num_to_track=last-start,
             reverse=True)``
both         the forward call, then ``propagate_in_video(state, start_frame_idx=first,
             max_frame_num_to_track=first-start, reverse=True)`` (SAM2 skips a reverse call from
             frame 0); slice ``first`` is tracked twice and keeps the forward pass's labels
===========  =====================================================================================

A run started from a given slice (a correction) uses that slice instead of
``first``/``last``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Pass", "StopRule", "plan_passes"]


@dataclass(frozen=True)
class Pass:
    """One ``propagate_in_video`` call: the frames it visits, in order, and its direction."""

    reverse: bool
    frames: range

    def sam2_call(self) -> dict:
        """The keyword arguments of the equivalent ``SAM2VideoPredictor.propagate_in_video`` call."""
        first = self.frames[0]
        return {"start_frame_idx": first, "max_frame_num_to_track": len(self.frames) - 1, "reverse": self.reverse}


def plan_passes(direction: str, prompted: Iterable[int], start: int, stop: int,
                from_slice: int | None = None) -> list[Pass]:
    """The passes of one run over slices ``start <= i < stop``.

    ``prompted``: every slice that conditions an object.  Without
    ``from_slice``, forward (and ``both``) start at the earliest prompted
    slice, backward alone at the latest; with it, every pass starts there.
    """
    prompted = sorted(set(prompted))
    forward_from = prompted[0] if from_slice is None else from_slice
    backward_from = prompted[-1] if from_slice is None else from_slice
    passes = []
    if direction in ("forward", "both"):
        passes.append(Pass(False, range(forward_from, stop)))
    if direction == "backward":
        passes.append(Pass(True, range(backward_from, start - 1, -1)))
    if direction == "both" and forward_from > 0:  # SAM2 does not run a reverse call from frame 0
        passes.append(Pass(True, range(forward_from, start - 1, -1)))
    return [p for p in passes if len(p.frames)]


class StopRule:
    """Drops an object SAM2 stops seeing, counting only from the object's own prompts.

    Per pass: an object counts as unseen on a slice when its object-score
    logit is below ``threshold``; after ``after`` unseen slices in a row it is
    dropped for the rest of the pass.  Slices before the object's first
    prompted slice in the pass's direction do not count (SAM2 tracks it there
    from a prompt still ahead), and on each of its prompted slices the object
    is taken up again with its count reset, so an object is always tracked
    on its own prompted slices.

    Parameters
    ----------
    prompted : mapping
        ``object -> slices that condition it``.
    objects : collection
        The objects this run tracks.
    threshold, after : float, int or None
        ``after=None``: never drop.
    """

    def __init__(self, prompted: Mapping[int, Collection[int]], objects: Collection[int], threshold: float,
                 after: int | None) -> None:
        self.prompted = {o: set(prompted.get(o, ())) for o in objects}
        self.threshold, self.after = threshold, after
        self.active = dict.fromkeys(objects, True)
        self.counting = dict.fromkeys(objects, False)
        self.unseen = dict.fromkeys(objects, 0)

    def objects_at(self, t: int) -> list[int]:
        """The objects to track on slice ``t`` (prompted ones taken up again)."""
        for o, slices in self.prompted.items():
            if t in slices:
                self.active[o], self.counting[o], self.unseen[o] = True, True, 0
        return [o for o, on in self.active.items() if on]

    def update(self, scores: Mapping[int, float]) -> list[int]:
        """Count one slice's object scores; returns the objects dropped on it."""
        if self.after is None:
            return []
        dropped = []
        for o, score in scores.items():
            if not self.counting[o]:
                continue
            self.unseen[o] = self.unseen[o] + 1 if score < self.threshold else 0
            if self.unseen[o] >= self.after:
                self.active[o] = False
                dropped.append(o)
        return dropped

    def finished(self, ahead: range) -> bool:
        """True when no object is tracked and none is prompted on the slices ``ahead`` in this pass."""
        if any(self.active.values()):
            return False
        return not any(t in ahead for slices in self.prompted.values() for t in slices)
