"""What the Propagate, one-shot and automatic-segmentation docks save to the image's work folder after a run or a re-run.

Each function records one finished write through :func:`._workfolder.save_run`
(nothing when saving is off or the folder keeps another Labels layer) and
returns a sentence the dock adds to its status line.  ``step`` is the write's
step in the layer's history: its undos and redos (a dock's Undo, Ctrl-Z or
Ctrl-Shift-Z on the layer) are recorded too; ``report(text, level=...)`` hears
when one could not be.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..app import workfolder as wf
from ._workfolder import save_run

__all__ = ["propagation_saved", "oneshot_saved", "slice_rerun_saved", "autoseg_saved"]


def propagation_saved(viewer: Any, job: Any, target: Any, result: Any, record: Any, renamed: dict, step: Any,
                      report: Any) -> str:
    """Save a propagation or a correction (``job.objects``): its prompts as given, options and masks."""
    image, options, model = job.image, job.options, job.kept.run.session.model
    prompts = [replace(p, object=renamed.get(p.object, p.object)) for p in job.prompts]
    saved = {} if options is None else {"direction": options.direction, "start": options.start,
                                        "stop": options.stop, "stop_after": options.stop_after,
                                        "stop_threshold": options.stop_threshold}
    if job.objects:
        saved["correction"] = True
    refine = True if options is None else bool(options.refine)

    def write(folder: wf.WorkFolder, labels: Any) -> dict:
        return wf.record_propagation(folder, prompts, result, record.change, labels, model=model, refine=refine,
                                     options=saved, contrast_limits=list(image.contrast_limits),
                                     gamma=float(image.gamma), rgb=bool(image.rgb))

    return save_run(viewer, image, target, record.change, write, step=step, report=report)


def oneshot_saved(viewer: Any, image: Any, target: Any, outcome: Any, edit: Any, reference_index: int,
                  run: dict, step: Any, report: Any) -> str:
    """Save a one-shot run merged as ``edit``: ``run`` holds ``reference`` (the painted plane), ``model``, ``refine``,
    ``options``."""
    outcome = replace(outcome, edit=edit)

    def write(folder: wf.WorkFolder, labels: Any) -> dict:
        return wf.record_oneshot(folder, outcome, reference_index, run["reference"], labels, model=run["model"],
                                 refine=run["refine"], options=run["options"],
                                 contrast_limits=list(image.contrast_limits), gamma=float(image.gamma),
                                 rgb=bool(image.rgb))

    return save_run(viewer, image, target, edit, write, step=step, report=report)


def slice_rerun_saved(viewer: Any, image: Any, target: Any, index: int, clicks: Any, edit: Any, model: Any,
                      method: str, step: Any, report: Any) -> str:
    """Save one slice of a one-shot run re-segmented from its clicks (``clicks``: points, labels, object ids)."""

    def write(folder: wf.WorkFolder, labels: Any) -> dict:
        return wf.record_slice_rerun(folder, index, clicks.points, clicks.labels, clicks.object_ids, edit, labels,
                                     model=model, method=method)

    return save_run(viewer, image, target, edit, write, step=step, report=report)


def autoseg_saved(viewer: Any, image: Any, target: Any, change: Any, run: dict, step: Any, report: Any) -> str:
    """Save one automatic run: ``run`` holds ``written`` (label id, object), ``boxes``, ``options``, ``model``
    (``None`` without SAM2), ``generator`` and ``generator_file``."""
    generator = run["generator"]

    def write(folder: wf.WorkFolder, labels: Any) -> dict:
        return wf.record_autoseg(folder, run["written"], generator.classes, change, labels, model=run["model"],
                                 options=run["options"],
                                 generator=wf.generator_provenance(generator, run["generator_file"]),
                                 boxes=run["boxes"], contrast_limits=list(image.contrast_limits),
                                 gamma=float(image.gamma), rgb=bool(image.rgb))

    return save_run(viewer, image, target, change, write, step=step, report=report)
