"""Follow objects through a stack or video with SAM2's memory.

The tracking itself is SAM2's (:class:`~.video_features.CachedVideoPredictor`);
this module adds what a napari user needs around it: prompts on any slices
(refined clicks, boxes, masks), several objects, a slice range, a direction,
a stop rule, progress and cancel, and bounded memory.

Memory: SAM2 keeps every frame's tracking output.  Here an output is dropped
once it is farther than SAM2's memory window from the frame being tracked and
from every conditioning (prompted) frame of its object; the labels are kept
compactly (:class:`~.label_planes.LabelPlanes`: per slice the box of its
objects and run-length values); a frame's embedding is read from the cache
when a click put it there, and otherwise encoded for the run alone (the disk
cache keeps it, memory does not: a long video would fill the memory budget
with frames nobody clicked).  So what a run holds does not grow with the
number of frames, apart from its compact labels.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import jobs
from .coords import normalized_to_pixels, normalized_to_prompt, pixels_to_normalized
from .image_adapter import split_stack
from .label_planes import LabelPlanes
from .prompts import FramePrompt, PromptError, box_to_normalized, check_clicks, merge_prompts, negative_only
from .propagation_plan import Pass, StopRule, plan_passes
from .video_features import CachedVideoPredictor

__all__ = ["PropagationResult", "PropagationSession", "propagate", "slice_range", "DIRECTIONS"]

DIRECTIONS = ("forward", "backward", "both")
RECENT_FRAMES = 2
"""Embeddings a session holds itself: the frame being tracked and the one before."""
FrameCallback = Callable[[int, np.ndarray], None]
LogitsCallback = Callable[[int, dict[int, np.ndarray]], None]


@dataclass
class PropagationResult:
    """What one propagation gives.

    Attributes
    ----------
    labels : LabelPlanes (N, H, W) int32
        Object ids (0 = background) on every slice the run reached; where
        objects overlap, the one with the highest mask logit wins.  Compact:
        ``labels[i]`` decodes one slice, ``np.asarray(labels)`` the volume.
    scores : ndarray (N, K) float32
        SAM2's object-score logit per slice and object (``> 0``: SAM2 sees the
        object); NaN where the object was not tracked.
    object_ids : tuple of int
        The ``K`` objects, in the column order of ``scores``.
    tracked : ndarray (N,) bool
        Slices the run went through.
    stopped : dict
        ``object id -> slices`` where the stop rule dropped it.
    prompts : list of FramePrompt
        The prompts as used: positive clicks after refinement.
    """

    labels: LabelPlanes | np.ndarray
    scores: np.ndarray
    object_ids: tuple[int, ...]
    tracked: np.ndarray
    stopped: dict[int, list[int]] = field(default_factory=dict)
    prompts: list[FramePrompt] = field(default_factory=list, repr=False)


class PropagationSession:
    """One stack, its objects and SAM2's tracking state, across runs and corrections.

    Parameters
    ----------
    model : RPSAM2
        The model (its backbone, embedding cache and shift block are used).
    stack : array-like (N, H, W) or (N, H, W, C)
        Any array supporting ``stack[i]`` (numpy, dask, zarr); slices are read one at a time.
    contrast_limits, gamma, rgb, key
        As for :meth:`RPSAM2.embed`; with ``key``, slice ``i`` is cached under ``(key, i)``.
    """

    def __init__(self, model, stack, *, contrast_limits: Sequence[float] | None = None, gamma: float = 1.0,
                 rgb: bool | None = None, key=None) -> None:
        n, has_channels = split_stack(stack, rgb)
        if np.ndim(stack) - int(has_channels) != 3:
            raise PromptError(f"propagation needs a stack (N, H, W[, C]); got shape {np.shape(stack)}")
        self.model, self.stack, self.num_slices = model, stack, n
        self.image_hw = tuple(int(s) for s in np.shape(stack)[1:3])
        self._embed_args = {"contrast_limits": contrast_limits, "gamma": gamma, "rgb": rgb}
        self._key = key
        self.predictor = CachedVideoPredictor.sharing(model.backbone.model)
        self.state = self.predictor.new_state(n, self.image_hw, self.embedding)
        self.prompts: list[FramePrompt] = []
        self._cancel: jobs.Cancel | None = None  # the running job's, checked within a frame
        self._recent: OrderedDict[int, object] = OrderedDict()  # the last frames' embeddings

    def embedding(self, index: int):
        """The embedding of slice ``index`` (read and encoded on demand).

        Taken from the model's cache when it holds the slice (e.g. a clicked
        one); otherwise encoded (and written to the disk cache, if any) but not
        kept in the memory cache: only the last :data:`RECENT_FRAMES` frames
        are held here, for the objects tracked on the same frame.  During a
        run its ``cancel`` is checked first, so a Cancel acts before a slice is
        read or encoded, not only between slices.
        """
        jobs.check(self._cancel, "propagation")
        emb = self._recent.get(index)
        if emb is None:
            plane = np.asarray(self.stack[index])
            key = None if self._key is None else (self._key, index)
            emb = self.model.embed(plane, key=key, remember=False, **self._embed_args)
            self._recent[index] = emb
            while len(self._recent) > RECENT_FRAMES:
                self._recent.popitem(last=False)
        self._recent.move_to_end(index)
        return emb

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Objects that have prompts, in SAM2's order."""
        return tuple(self.state["obj_ids"])

    # ------------------------------------------------------------------ prompts
    def add(self, prompts: Iterable[FramePrompt], refine: bool = True) -> list[FramePrompt]:
        """Give prompts; a slice already tracked for that object gets a correction.

        A prompt on a slice the object was not tracked on conditions the object
        there without memory (as SAM does on one image); on a tracked slice it
        corrects the tracked mask with the memory, and that slice becomes a
        conditioning slice for later runs (SAM2's behaviour).  Returns the
        prompts as used (positive clicks refined when ``refine``).
        """
        merged = merge_prompts(prompts, self.image_hw, self.num_slices)
        for (obj, sl), p in merged.items():
            if negative_only(p) and not self._tracked(obj, sl):
                raise PromptError(f"object {obj} on slice {sl} has only negative clicks; add a positive click or "
                                  "a box there (a negative click only says where the object is not)")
        used = []
        with torch.inference_mode(), self.model.backbone.autocast():
            for (obj, sl), p in merged.items():
                used.append(self._add_one(obj, sl, p, refine))
        self.prompts.extend(used)
        return used

    def _tracked(self, obj: int, sl: int) -> bool:
        """Whether object ``obj`` already has a mask on slice ``sl`` (a prompt there corrects it)."""
        idx = self.state["obj_id_to_idx"].get(obj)
        return idx is not None and sl in self.state["frames_tracked_per_obj"].get(idx, {})

    def _add_one(self, obj: int, sl: int, p: FramePrompt, refine: bool) -> FramePrompt:
        pred, state = self.predictor, self.state
        self._restore_memory(obj, sl)
        if p.mask is not None:
            pred.add_new_mask(state, sl, obj, torch.from_numpy(p.mask))
            return p
        emb = self.embedding(sl)
        size = pred.image_size
        xy = np.zeros((0, 2))
        lab = np.zeros(0, np.int64)
        if p.points is not None and len(np.asarray(p.points)):
            pts, lab = check_clicks(p.points, p.labels, self.image_hw)
            xy_t = torch.as_tensor(pixels_to_normalized(pts, self.image_hw), dtype=torch.float64,
                                   device=self.model.device)
            positive = torch.as_tensor(lab == 1, device=xy_t.device)
            if refine and bool(positive.any()):
                ctx = self.model.image_context(emb)
                xy_t[positive] = self.model.refine_normalized(emb, xy_t[positive], ctx).to(xy_t.dtype)
            xy = xy_t.cpu().numpy()
            p = FramePrompt(sl, obj, normalized_to_pixels(xy, self.image_hw), lab, p.box)
        box = None
        if p.box is not None:
            box = normalized_to_prompt(torch.as_tensor(box_to_normalized(np.asarray(p.box), self.image_hw)),
                                       size).float() / size
        points = normalized_to_prompt(torch.as_tensor(xy), size).float() / size
        pred.add_new_points_or_box(state, sl, obj, points=points, labels=torch.as_tensor(lab, dtype=torch.int32),
                                   box=box, normalize_coords=False)
        return p

    def _restore_memory(self, obj: int, t: int) -> None:
        """Before a correction on tracked slice ``t``: bring back the memory SAM2 reads there.

        A correction combines the click with the object's mask on ``t`` and its
        memory of the slices tracked just before ``t``.  Outputs farther than
        the memory window from where the last run ended were dropped (bounded
        memory); then the object is tracked again, without writing anything,
        from its nearest prompted slice on that side up to ``t``, as the run
        that reached ``t`` tracked it.
        """
        state = self.state
        idx = state["obj_id_to_idx"].get(obj)
        tracked = {} if idx is None else state["frames_tracked_per_obj"][idx]
        if t not in tracked:
            return  # a first prompt there: SAM2 uses no memory
        outputs = state["output_dict_per_obj"][idx]
        cond, non_cond = outputs["cond_frame_outputs"], outputs["non_cond_frame_outputs"]
        if t in cond:
            return
        reverse = bool(tracked[t]["reverse"])
        back = 1 if reverse else -1  # memory comes from the slices tracked before t
        reach = range(t, t + back * (self.predictor.memory_window() + 1), back)
        needed = [k for k in reach if 0 <= k < self.num_slices and k in tracked and k not in cond]
        if all(k in non_cond for k in needed):
            return
        behind = [c for c in cond if (c > t if reverse else c < t)]
        if not behind:
            return
        origin = min(behind) if reverse else max(behind)
        for k in range(origin, t + (-1 if reverse else 1), -1 if reverse else 1):
            self._track_frame(k, reverse, [obj])
            self._forget_far_outputs(k, [idx])

    # ------------------------------------------------------------------ tracking
    def prompted_slices(self) -> dict[int, list[int]]:
        """``object id -> slices that condition it`` (its prompts and corrections), sorted."""
        outs = self.state["output_dict_per_obj"]
        return {self.state["obj_idx_to_id"][i]: sorted(o["cond_frame_outputs"]) for i, o in outs.items()}

    def _plan(self, direction: str, start: int, stop: int, from_slice: int | None) -> list[Pass]:
        prompted = self.prompted_slices()
        everywhere = sorted({t for slices in prompted.values() for t in slices})
        outside = [t for t in everywhere if not start <= t < stop]
        if outside:
            raise PromptError(f"slice {outside[0]} has prompts but lies outside the range {start}–{stop - 1}; "
                              "widen the range or remove those prompts")
        if from_slice is not None and not start <= from_slice < stop:
            raise PromptError(f"the run cannot start at slice {from_slice}: it lies outside the range "
                              f"{start}–{stop - 1}")
        return plan_passes(direction, everywhere, start, stop, from_slice)

    def _objects(self, objects: Iterable[int] | None) -> list[int]:
        if objects is None:
            return list(self.object_ids)
        chosen = [int(o) for o in objects]
        unknown = [o for o in chosen if o not in self.object_ids]
        if unknown:
            raise PromptError(f"object {unknown[0]} has no prompts in this propagation; give it a click, "
                              "a box or a mask first")
        return chosen

    def run(self, direction: str = "both", start: int | None = None, stop: int | None = None, *,
            from_slice: int | None = None, objects: Iterable[int] | None = None,
            stop_threshold: float = 0.0, stop_after: int | None = None,
            progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None,
            on_frame: FrameCallback | None = None, on_logits: LogitsCallback | None = None) -> PropagationResult:
        """Track the prompted objects; see :func:`propagate` for the common arguments.

        Each pass is one ``SAM2VideoPredictor.propagate_in_video`` call
        (:mod:`~napari_rpsam2.model.propagation_plan`).  ``from_slice`` starts
        every pass there instead (e.g. a corrected slice); ``objects`` tracks
        only those object ids (the others are neither run nor labelled; SAM2
        tracks each object on its own, so their results would be the same).
        ``on_logits(index, {object id: logits (H, W) float32})`` gets the
        logits of every slice a pass tracks, as the SAM2 call yields them.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        start, stop = slice_range(start, stop, self.num_slices)
        if stop_after is not None and stop_after < 1:
            raise ValueError(f"stop_after must be at least 1 frame (or None for no stop rule), got {stop_after}")
        if not self.state["obj_ids"]:
            raise PromptError("no prompts given: click, draw a box or paint a mask on at least one slice")
        chosen = self._objects(objects)
        self._cancel = cancel
        try:
            return self._run(direction, start, stop, from_slice, chosen, stop_threshold, stop_after,
                             progress, cancel, on_frame, on_logits)
        finally:
            self._cancel = None
            self._recent.clear()  # nothing of the run's frames is held between runs

    def _run(self, direction: str, start: int, stop: int, from_slice: int | None, chosen: list[int],
             stop_threshold: float, stop_after: int | None, progress: jobs.Progress | None,
             cancel: jobs.Cancel | None, on_frame: FrameCallback | None,
             on_logits: LogitsCallback | None) -> PropagationResult:
        with torch.inference_mode(), self.model.backbone.autocast():
            self.predictor.propagate_in_video_preflight(self.state)
            passes = self._plan(direction, start, stop, from_slice)
            prompted = self.prompted_slices()
            total = sum(len(p.frames) for p in passes)
            n, ids = self.num_slices, self.object_ids
            result = PropagationResult(LabelPlanes((n, *self.image_hw), np.int32),
                                       np.full((n, len(ids)), np.nan, np.float32), ids,
                                       np.zeros(n, bool), {}, list(self.prompts))
            done = 0
            for p in passes:
                rule = StopRule(prompted, chosen, stop_threshold, stop_after)
                for k, t in enumerate(p.frames):
                    jobs.check(cancel, "propagation")
                    scores, logits = self._track_frame(t, p.reverse, rule.objects_at(t))
                    if on_logits is not None:
                        on_logits(t, {o: v.cpu().numpy() for o, v in logits.items()})
                    first_visit = not result.tracked[t]  # a slice tracked twice keeps its first pass's labels
                    plane = self._record(t, scores, logits, result) if first_visit else None
                    del logits
                    for o in rule.update(scores):
                        result.stopped.setdefault(o, []).append(int(t))
                    self._forget_far_outputs(t)
                    done += 1
                    jobs.report(progress, "frames", done, total)
                    if on_frame is not None and first_visit:
                        on_frame(t, plane)
                    if rule.finished(p.frames[k + 1:]):
                        break
            jobs.report(progress, "frames", total, total)
        return result

    def _track_frame(self, t: int, reverse: bool, objects: list[int]) -> tuple[dict, dict]:
        """One frame for ``objects``, as ``SAM2VideoPredictor.propagate_in_video`` does it.

        Returns ``({object: score}, {object: logits (H, W) at the stack's resolution})``.
        """
        pred, state = self.predictor, self.state
        scores, masks = {}, []
        for obj in objects:
            jobs.check(self._cancel, "propagation")
            obj_idx = state["obj_id_to_idx"][obj]
            outputs = state["output_dict_per_obj"][obj_idx]
            if t in outputs["cond_frame_outputs"]:
                out = outputs["cond_frame_outputs"][t]
                low = out["pred_masks"].to(state["device"])
            else:
                out, low = pred._run_single_frame_inference(
                    inference_state=state, output_dict=outputs, frame_idx=t, batch_size=1,
                    is_init_cond_frame=False, point_inputs=None, mask_inputs=None, reverse=reverse,
                    run_mem_encoder=True)
                outputs["non_cond_frame_outputs"][t] = out
            state["frames_tracked_per_obj"][obj_idx][t] = {"reverse": reverse}
            scores[obj] = float(out["object_score_logits"].float().reshape(-1)[0])
            masks.append(low)
        if not masks:
            return scores, {}
        _, video = pred._get_orig_video_res_output(state, torch.cat(masks, dim=0))
        return scores, dict(zip(objects, video[:, 0].float()))

    @staticmethod
    def _record(t: int, scores: dict, logits: dict, result: PropagationResult) -> np.ndarray:
        """Slice ``t``'s scores and labels (the highest logit wins where objects overlap); returns the labels."""
        result.tracked[t] = True
        column = {o: k for k, o in enumerate(result.object_ids)}
        for o, score in scores.items():
            result.scores[t, column[o]] = score
        if not logits:
            return np.zeros(result.labels.shape[1:], np.int32)
        best, which = torch.stack(list(logits.values())).max(dim=0)
        ids = torch.as_tensor(list(logits), dtype=torch.int32, device=best.device)
        plane = torch.where(best > 0, ids[which], 0).cpu().numpy()
        result.labels[t] = plane  # kept compactly: the box of the objects and run-length values
        return plane

    def _forget_far_outputs(self, t: int, objects: Iterable[int] | None = None) -> None:
        """Drop tracking outputs SAM2's memory can no longer reach (conditioning frames stay).

        ``objects``: only these object indices (default: all).
        """
        window = self.predictor.memory_window()
        per_obj = self.state["output_dict_per_obj"]
        for idx in per_obj if objects is None else objects:
            outputs = per_obj[idx]
            cond = list(outputs["cond_frame_outputs"])
            non_cond = outputs["non_cond_frame_outputs"]
            for k in [k for k in non_cond if abs(k - t) > window and all(abs(k - c) > window for c in cond)]:
                del non_cond[k]


def slice_range(start: int | None, stop: int | None, n: int) -> tuple[int, int]:
    """``(start, stop)`` with the defaults filled in; PromptError when they do not fit ``n`` slices."""
    start = 0 if start is None else int(start)
    stop = n if stop is None else int(stop)
    if not 0 <= start < stop <= n:
        raise PromptError(f"slice range {start}–{stop - 1} does not fit the stack of {n} slices; "
                          f"give 0 <= start < stop <= {n}")
    return start, stop


def propagate(model, stack, prompts: Iterable[FramePrompt], *, direction: str = "both",
              start: int | None = None, stop: int | None = None, refine: bool = True,
              stop_threshold: float = 0.0, stop_after: int | None = None,
              contrast_limits: Sequence[float] | None = None, gamma: float = 1.0, rgb: bool | None = None,
              key=None, progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None,
              on_frame: FrameCallback | None = None) -> PropagationResult:
    """Segment objects through a stack from prompts on some of its slices.

    Parameters
    ----------
    model : RPSAM2
    stack : array-like (N, H, W) or (N, H, W, C)
        Read one slice at a time (numpy, dask, zarr).
    prompts : iterable of FramePrompt
        Clicks, boxes or masks per object on any slices; every prompted slice
        conditions its object there.
    direction : "forward", "backward" or "both"
        Each pass is one call of SAM2's ``propagate_in_video``: forward from the
        earliest prompted slice to the end of the range; backward from the
        latest prompted slice back to its start; both: forward, then backward
        from the earliest prompted slice (which keeps the forward labels).
        Every object is tracked on every slice of a pass, before its own
        first prompt too (SAM2 conditions it from that prompt ahead), as
        :mod:`~napari_rpsam2.model.propagation_plan` states.
    start, stop : int, optional
        Only slices ``start <= i < stop`` are tracked.
    refine : bool
        Move positive clicks with the shift block first (RP-SAM2).
    stop_threshold, stop_after : float, int or None
        An object whose object-score logit stays below ``stop_threshold`` for
        ``stop_after`` consecutive slices is dropped in that pass until its next
        prompted slice (``None``: never).  Slices are counted only from the
        object's own first prompt in the pass's direction; an object is always
        tracked on its prompted slices.
    progress, cancel
        The long-job contract (:mod:`napari_rpsam2.jobs`): stage ``"frames"``.
    on_frame : callable(index, labels2d), optional
        Called after each slice with its labels, a new (H, W) int32 array (to
        show slices already done).
    """
    session = PropagationSession(model, stack, contrast_limits=contrast_limits, gamma=gamma, rgb=rgb, key=key)
    slice_range(start, stop, session.num_slices)
    session.add(prompts, refine=refine)
    return session.run(direction, start, stop, stop_threshold=stop_threshold, stop_after=stop_after,
                       progress=progress, cancel=cancel, on_frame=on_frame)
