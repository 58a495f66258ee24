"""The work folder use cases: open it for an image, record every write with its prompts, restore, re-run.

Both front ends call these: the click dock records commits and undos; the
Propagate and one-shot docks record their runs; ``rpsam2 rerun`` and
``rpsam2 export`` read a folder back.  The folder itself is
:class:`napari_rpsam2.annotations.WorkFolder` (see ``docs/workfolder.md``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import jobs
from ..annotations import Restored, WorkFolder, WorkFolderError, image_signature, mask_digest
from .workfolder_adapters import adapter_refusal, recorded_adapters, use_adapters_of

if TYPE_CHECKING:
    from ..model import RPSAM2, FramePrompt, SegmentResult
    from .label_changes import LabelChange

__all__ = ["WorkFolder", "WorkFolderError", "Restored", "default_location", "open_for_image", "model_provenance",
           "record_commit", "record_propagation", "record_oneshot", "record_undo", "undo_object", "restore",
           "record_slice_rerun", "record_autoseg", "recorded_adapters", "adapter_refusal", "generator_provenance", "RerunOutcome", "rerun", "export", "open_source", "input_form_name", "frame_names",
           "SUFFIX"]

SUFFIX = ".rpsam2"


def default_location(image_path: str | os.PathLike) -> Path:
    """``<folder>/<name>.rpsam2`` next to the image file (or folder of frames) ``image_path``."""
    p = Path(image_path).expanduser().resolve()
    return p.with_name((p.name if p.is_dir() else p.stem) + SUFFIX)


def open_for_image(image, shape: Sequence[int], *, image_path: str | os.PathLike | None = None,
                   folder: str | os.PathLike | None = None, create: bool = True) -> WorkFolder:
    """The work folder of ``image`` (labels of ``shape``): ``folder``, or the default one next to ``image_path``.

    ``create`` False only opens an existing folder.  Raises
    :class:`WorkFolderError` when the folder belongs to another image or
    cannot be made.
    """
    if folder is None and image_path is None:
        raise WorkFolderError("the image was not opened from a file: choose a folder for its work folder")
    location = Path(folder).expanduser() if folder is not None else default_location(image_path)
    signature = image_signature(image)
    if not create:
        found = WorkFolder.open(location)
        found.check_image(shape, signature)
        return found
    source = None if image_path is None else str(Path(image_path).expanduser().resolve())
    return WorkFolder.create(location, image_path=source, shape=shape, signature=signature)


def model_provenance(model: RPSAM2, refine: bool) -> dict:
    """What identifies the model that made an object: method, backbone, SAM2 weights, shift block (and adapter)."""
    from ..model.shift_block import weights_digest

    adapters = getattr(model.backbone, "adapters", None)  # SAM2 adapters loaded next to the weights
    return {"method": "rpsam2" if refine else "sam2", "backbone": model.backbone.name,
            "sam2_weights": model.backbone.weights_signature, "shift_block": weights_digest(model.shift_block),
            "shift_block_file": (model.shift_block_header or {}).get("path"),
            "adapter": None if adapters is None else adapters.digest()}


def _mapping(contrast_limits, gamma, rgb) -> dict:
    limits = None if contrast_limits is None else [float(v) for v in contrast_limits]
    return {"contrast_limits": limits, "gamma": float(gamma), "rgb": None if rgb is None else bool(rgb)}


def _points(array) -> list:
    return [] if array is None else np.asarray(array, dtype=float).reshape(-1, 2).round(4).tolist()


def record_commit(folder: WorkFolder, label_id: int, change: LabelChange, result: SegmentResult, labels, *,
                  model: RPSAM2, refine: bool, box: Sequence[float] | None = None, contrast_limits=None,
                  gamma: float = 1.0, rgb: bool | None = None) -> dict:
    """Record one commit of the click dock: the slice it changed, its clicks (as given and refined), its box."""
    index = list(change.slices[0].index) if change.slices else []
    prompt = {"slice": index, "object": int(label_id), "clicks": _points(result.clicks),
              "labels": [int(v) for v in np.asarray(result.labels).ravel()], "refined": _points(result.points),
              "box": None if box is None else [float(v) for v in box]}
    payload = {"objects": [int(label_id)], "prompts": [prompt], "model": model_provenance(model, refine),
               "mapping": _mapping(contrast_limits, gamma, rgb), "score": float(result.score),
               "mask": {"digest": mask_digest(result.mask), "pixels": int(np.count_nonzero(result.mask))},
               "written_pixels": int(change.size)}
    return folder.record("commit", payload, labels=labels, slices=change.slice_indices)


def _prompt_entry(prompt: FramePrompt, k: int) -> tuple[dict, dict]:
    entry = {"slice": [int(prompt.slice)], "object": int(prompt.object), "clicks": _points(prompt.points),
             "labels": [] if prompt.labels is None else [int(v) for v in np.asarray(prompt.labels).ravel()],
             "box": None if prompt.box is None else [float(v) for v in prompt.box], "mask": None}
    if prompt.labels is None and prompt.points is not None:
        entry["labels"] = [1] * len(entry["clicks"])
    arrays = {}
    if prompt.mask is not None:
        entry["mask"] = name = f"mask{k}"
        arrays[name] = np.asarray(prompt.mask, bool)
    return entry, arrays


def record_propagation(folder: WorkFolder, prompts: Iterable[FramePrompt], result, change: LabelChange, labels, *,
                       model: RPSAM2, refine: bool, options: Mapping[str, Any] | None = None,
                       contrast_limits=None, gamma: float = 1.0, rgb: bool | None = None) -> dict:
    """Record one propagation: its prompts (clicks, boxes, masks), options, and a digest per object and slice."""
    entries, arrays = [], {}
    for k, prompt in enumerate(prompts):
        entry, more = _prompt_entry(prompt, k)
        entries.append(entry)
        arrays.update(more)
    digests = {}
    for i in np.flatnonzero(np.asarray(result.tracked)):
        for oid in result.object_ids:
            mask = np.asarray(result.labels[i]) == oid
            if mask.any():
                digests[f"{int(i)}:{int(oid)}"] = mask_digest(mask)
    payload = {"objects": [int(o) for o in result.object_ids], "prompts": entries,
               "model": model_provenance(model, refine), "mapping": _mapping(contrast_limits, gamma, rgb),
               "options": dict(options or {}), "masks": digests, "written_pixels": int(change.size)}
    return folder.record("propagation", payload, labels=labels, slices=change.slice_indices, arrays=arrays)


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it: dataclasses (a warping config) become dicts, tuples lists."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def record_oneshot(folder: WorkFolder, outcome, reference_index: int, reference_labels: np.ndarray, labels, *,
                   model: RPSAM2, refine: bool, options: Mapping[str, Any] | None = None,
                   contrast_limits=None, gamma: float = 1.0, rgb: bool | None = None) -> dict:
    """Record one one-shot run: the reference slice and mask, the method and the clicks it generated.

    ``options``: ``method_options`` (the method's settings), ``object_ids``
    and ``targets`` as given to :func:`~napari_rpsam2.app.oneshot.propagate_from_slice`;
    ``rpsam2 rerun`` runs the method again with them.
    """
    objects = sorted({int(o.object_id) for r in outcome.results.values() for o in r.objects})
    generated = [{"slice": [int(i)], "object": int(o.object_id), "clicks": _points(o.points),
                  "labels": [int(v) for v in np.asarray(o.labels).ravel()], "mask": mask_digest(o.mask)}
                 for i, r in sorted(outcome.results.items()) for o in r.objects]
    prompts = [{"slice": [int(reference_index)], "object": oid, "clicks": [], "labels": [], "box": None,
                "mask": "reference"} for oid in objects]
    payload = {"objects": objects, "method": outcome.method, "reference_slice": int(reference_index),
               "prompts": prompts, "generated": generated, "model": model_provenance(model, refine),
               "mapping": _mapping(contrast_limits, gamma, rgb), "options": _plain(dict(options or {})),
               "written_pixels": int(outcome.edit.size)}
    return folder.record("oneshot", payload, labels=labels, slices=outcome.edit.slice_indices,
                         arrays={"reference": np.asarray(reference_labels)})


def record_slice_rerun(folder: WorkFolder, index: int, points, point_labels, object_ids, change: LabelChange,
                       labels, *, model: RPSAM2, method: str) -> dict:
    """Record a one-shot slice re-segmented from its (edited) clicks: per object, the clicks it got."""
    points = np.asarray(points, float).reshape(-1, 2)
    point_labels, object_ids = np.asarray(point_labels).ravel(), np.asarray(object_ids).ravel()
    objects = sorted({int(o) for o in object_ids})
    prompts = [{"slice": [int(index)], "object": oid, "clicks": _points(points[object_ids == oid]),
                "labels": [int(v) for v in point_labels[object_ids == oid]], "box": None, "mask": None}
               for oid in objects]
    payload = {"objects": objects, "method": method, "prompts": prompts, "model": model_provenance(model, False),
               "written_pixels": int(change.size)}
    return folder.record("oneshot-slice", payload, labels=labels, slices=change.slice_indices)


def generator_provenance(generator, path: str | os.PathLike | None = None) -> dict:
    """What identifies a prompt generator: its weights digest, its classes and, when read from one, its file."""
    import hashlib

    from ..model.shift_block import weights_digest

    file_digest = None
    if path is not None and Path(path).is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        file_digest = digest.hexdigest()
    return {"weights": weights_digest(generator.network), "classes": list(generator.classes),
            "input_size": int(generator.config.input_size), "context": int(generator.config.context),
            "file": None if path is None else str(path), "file_digest": file_digest}


def record_autoseg(folder: WorkFolder, written: Sequence[tuple[int, Any]], class_names: Sequence[str],
                   change: LabelChange, labels, *, model: RPSAM2 | None, options: Any,
                   generator: Mapping[str, Any], boxes: int, contrast_limits=None, gamma: float = 1.0,
                   rgb: bool | None = None) -> dict:
    """Record one automatic run: per object its reviewed box, slice and class; the settings, generator and model.

    ``written`` is ``(label id, RefinedBox)`` of each object written (see
    :func:`~napari_rpsam2.app.autoseg_review.write_objects`); ``class_names``
    the generator's classes (class index 1 is the first); ``options`` the
    refinement settings (a RefineOptions or a mapping); ``generator``
    :func:`generator_provenance`; ``model`` ``None`` when SAM2 was not used.
    """
    prompts, classes = [], {}
    for oid, obj in written:
        name = class_names[int(obj.class_index) - 1]
        classes[str(int(oid))] = name
        box = None if getattr(obj, "box", None) is None else [float(v) for v in obj.box]
        prompts.append({"slice": [] if np.ndim(labels) == 2 else [int(obj.slice_index)], "object": int(oid),
                        "clicks": [], "labels": [], "box": box, "mask": None, "class": name,
                        "score": float(obj.score)})
    provenance = {"method": "generator"} if model is None else model_provenance(model, True)
    payload = {"objects": [int(oid) for oid, _ in written], "prompts": prompts, "classes": classes,
               "model": provenance, "generator": dict(generator), "options": _plain(options),
               "reviewed_boxes": int(boxes), "mapping": _mapping(contrast_limits, gamma, rgb),
               "written_pixels": int(change.size)}
    return folder.record("autoseg", payload, labels=labels, slices=change.slice_indices)


def record_undo(folder: WorkFolder, seq: int, labels, slices: Iterable[Sequence[int]]) -> dict:
    """Record that event ``seq`` was undone, with the slices as they are after the undo."""
    return folder.record("undo", {"undoes": int(seq)}, labels=labels, slices=[tuple(s) for s in slices])


def undo_object(folder: WorkFolder, kind: str, object_id: int, labels, slices: Iterable[Sequence[int]]) -> dict | None:
    """Record the undo of the latest event of ``kind`` still in effect that wrote ``object_id`` (None if none)."""
    for event in reversed(folder.live_events()[0]):
        if event.get("kind") == kind and int(object_id) in event.get("objects", ()):
            return record_undo(folder, int(event["seq"]), labels, slices)
    return None


def restore(folder: WorkFolder) -> Restored:
    """The labels and every object's events (prompts, method, model) still in effect."""
    return folder.restore()


@dataclass(frozen=True)
class RerunOutcome:
    """One saved object segmented again from its saved prompts."""

    seq: int
    kind: str
    object_id: int
    slice: tuple[int, ...]
    reproduced: bool
    saved_pixels: int
    new_pixels: int
    note: str = ""


def _same_model(event: Mapping, model: RPSAM2) -> str:
    saved, now = event.get("model", {}), model_provenance(model, True)
    differs = [k for k in ("backbone", "sam2_weights", "shift_block") if saved.get(k) != now[k]]
    return "" if not differs else "saved with another " + ", ".join(k.replace("_", " ") for k in differs)


_PROPAGATE_OPTIONS = ("direction", "start", "stop", "stop_after", "stop_threshold")


def _rerun_commit(event: Mapping, model: RPSAM2, image) -> list[RerunOutcome]:
    prompt, mapping = event["prompts"][0], event.get("mapping", {})
    index = tuple(prompt["slice"])
    plane = np.asarray(image[index] if index else image)
    result = model.segment(plane, np.asarray(prompt["clicks"], float).reshape(-1, 2), prompt["labels"],
                           event["model"]["method"] == "rpsam2", box=prompt.get("box"),
                           contrast_limits=mapping.get("contrast_limits"), gamma=mapping.get("gamma", 1.0),
                           rgb=mapping.get("rgb"))
    same = mask_digest(result.mask) == event["mask"]["digest"]
    return [RerunOutcome(int(event["seq"]), "commit", int(prompt["object"]), index, same,
                         int(event["mask"]["pixels"]), int(np.count_nonzero(result.mask)),
                         "" if same else _same_model(event, model))]


def _rerun_propagation(folder: WorkFolder, event: Mapping, model: RPSAM2, image, cancel) -> list[RerunOutcome]:
    from ..model import FramePrompt

    prompts = []
    for p in event["prompts"]:
        mask = None if not p.get("mask") else folder.load_array(event["arrays"][p["mask"]]).astype(bool)
        clicks = np.asarray(p.get("clicks") or [], float).reshape(-1, 2)
        prompts.append(FramePrompt(int(p["slice"][0]), int(p["object"]), points=clicks if len(clicks) else None,
                                   labels=np.asarray(p["labels"]) if len(clicks) else None,
                                   box=None if p.get("box") is None else tuple(p["box"]), mask=mask))
    options = {k: v for k, v in (event.get("options") or {}).items() if k in _PROPAGATE_OPTIONS}
    mapping = event.get("mapping", {})
    result = model.propagate(image, prompts, refine=event["model"]["method"] == "rpsam2", cancel=cancel,
                             contrast_limits=mapping.get("contrast_limits"), gamma=mapping.get("gamma", 1.0),
                             rgb=mapping.get("rgb"), **options)
    saved: dict[int, dict[str, str]] = {}
    for key, digest in event.get("masks", {}).items():
        saved.setdefault(int(key.split(":")[1]), {})[key] = digest
    outcomes = []
    for oid in event.get("objects", ()):
        now = {f"{int(i)}:{oid}": mask_digest(np.asarray(result.labels[i]) == oid)
               for i in np.flatnonzero(np.asarray(result.tracked)) if (np.asarray(result.labels[i]) == oid).any()}
        same = now == saved.get(int(oid), {})
        outcomes.append(RerunOutcome(int(event["seq"]), "propagation", int(oid), (), same,
                                     len(saved.get(int(oid), {})), len(now),
                                     "" if same else _same_model(event, model) or "masks differ on some slices"))
    return outcomes


def _rerun_oneshot(folder: WorkFolder, event: Mapping, model: RPSAM2, image, cancel) -> list[RerunOutcome]:
    from ..oneshot import WarpConfig
    from .oneshot import propagate_from_slice

    options = dict(event.get("options") or {})
    method_options = dict(options.get("method_options") or {})
    if isinstance(method_options.get("config"), Mapping):
        method_options["config"] = WarpConfig(**method_options["config"])
    mapping = event.get("mapping", {})
    reference = folder.load_array(event["arrays"]["reference"])
    outcome = propagate_from_slice(model, image, int(event["reference_slice"]), reference, None,
                                   method=event["method"], refine=event["model"]["method"] == "rpsam2",
                                   object_ids=options.get("object_ids"), targets=options.get("targets"),
                                   method_options=method_options, rgb=mapping.get("rgb"),
                                   contrast_limits=mapping.get("contrast_limits"), gamma=mapping.get("gamma", 1.0),
                                   cancel=cancel)
    saved: dict[int, dict[str, str]] = {}
    for g in event.get("generated", ()):
        saved.setdefault(int(g["object"]), {})[str(g["slice"][0])] = g["mask"]
    outcomes = []
    for oid in event.get("objects", ()):
        now = {str(i): mask_digest(o.mask) for i, r in outcome.results.items() for o in r.objects
               if int(o.object_id) == int(oid)}
        same = now == saved.get(int(oid), {})
        outcomes.append(RerunOutcome(int(event["seq"]), "oneshot", int(oid), (), same, len(saved.get(int(oid), {})),
                                     len(now), "" if same else _same_model(event, model) or "masks differ"))
    return outcomes


def _not_rerun(event: Mapping, why: str) -> list[RerunOutcome]:
    return [RerunOutcome(int(event["seq"]), event["kind"], int(oid), (), False, 0, 0, why)
            for oid in event.get("objects", ())]


def rerun(folder: WorkFolder, model: RPSAM2, image, *, progress: jobs.Progress | None = None,
          cancel: jobs.Cancel | None = None) -> list[RerunOutcome]:
    """Segment every saved commit, propagation and one-shot run again from its saved prompts; compare exactly.

    ``image`` is the folder's image (checked against its signature first).
    For a propagation or one-shot run, ``saved_pixels`` / ``new_pixels``
    count the slices holding the object.  Corrections of a propagation and
    one-shot slice re-runs and automatic runs are listed with ``note`` saying they are not re-run.
    """
    folder.check_image(folder.shape, image_signature(image))
    events = folder.live_events()[0]
    outcomes: list[RerunOutcome] = []
    loaded = getattr(model.backbone, "adapters", None)
    header = dict(getattr(model.backbone, "adapter_header", None) or {})
    try:
        for done, event in enumerate(events):
            jobs.check(cancel, "re-run")
            outcomes += _rerun_event(folder, event, model, image, cancel, loaded, header)
            if progress is not None:
                progress("re-run", done + 1, len(events))
    finally:  # the model leaves as it came
        if loaded is not None and model.backbone.adapters is not loaded:
            model.backbone.use_adapters(loaded, header)
    return outcomes


def _rerun_event(folder: WorkFolder, event: Mapping, model: RPSAM2, image, cancel, loaded,
                 header: dict) -> list[RerunOutcome]:
    """One saved event segmented again (or listed as not re-run, with why)."""
    kind = event.get("kind")
    if kind in ("commit", "propagation", "oneshot"):
        why = use_adapters_of(event, model, loaded, header) if hasattr(model.backbone, "use_adapters") else ""
        if why:
            return _not_rerun(event, why)
    if kind == "commit":
        return _rerun_commit(event, model, image)
    if kind == "propagation" and (event.get("options") or {}).get("correction"):
        return _not_rerun(event, "corrections of a propagation are not re-run yet")
    if kind == "propagation":
        return _rerun_propagation(folder, event, model, image, cancel)
    if kind == "oneshot":
        return _rerun_oneshot(folder, event, model, image, cancel)
    if kind == "autoseg":
        return _not_rerun(event, "automatic runs are not re-run (they need the prompt generator)")
    return _not_rerun(event, f"{kind} runs are not re-run yet")


def frame_names(folder: WorkFolder) -> list[str]:
    """The name of each frame of the folder's image: its files for a folder of frames, else ``<stem>_0007``."""
    meta, shape = folder.meta, folder.shape
    n = shape[0] if len(shape) == 3 else 1
    if meta.get("frame_names") and len(meta["frame_names"]) == n:
        return [str(v) for v in meta["frame_names"]]
    source = Path(meta["image"]) if meta.get("image") else None
    if source is not None and source.is_dir():
        from ..training.data import list_image_files

        try:
            files = list_image_files(source)
        except ValueError:
            files = []
        if len(files) == n:
            return [f.name for f in files]
    if len(shape) == 2:
        return [source.name if source is not None else f"{folder.path.stem}.png"]
    stem = source.stem if source is not None else folder.path.stem
    return [f"{stem}_{i:04d}.png" for i in range(n)]


def _write_labels_in_form(folder: WorkFolder, labels: np.ndarray, out: str | os.PathLike, source) -> Path:
    """``labels`` in the form of ``out``: a .tif stack, NIfTI with ``source``'s affine, or per-frame PNGs."""
    from ..io import output_form, write_labels
    from ..io.writers import write_png_folder

    stack = np.asarray(labels)[None] if labels.ndim == 2 else labels  # a 2D chunked array takes no None index
    meta = {"work_folder": str(folder.path)}
    if output_form(out) == "png" and (source is None or len(source.names) != len(stack)):
        names = [Path(n).stem for n in frame_names(folder)]
        return write_png_folder(stack, out, names, meta)
    return write_labels(stack if output_form(out) != "tiff" else labels, out, source, meta)


def open_source(folder: WorkFolder):
    """The folder's image as the reader opens it (frame names, a volume's affine), or ``None`` when it is gone."""
    from ..io import InputError, open_images

    path = folder.meta.get("image")
    if not path or not Path(path).exists():
        return None
    try:
        return open_images(path)
    except (InputError, OSError, ValueError):
        return None


def input_form_name(source) -> str | None:
    """Export name of the labels in ``source``'s own form: ``labels.nii.gz``, ``labels`` (PNGs), or None (TIFF)."""
    from ..io import default_form

    form = None if source is None else default_form(source)
    return {"nifti": "labels.nii.gz", "png": "labels"}.get(form)


def export(folder: WorkFolder, *, labels=None, prompts: str | os.PathLike | None = None,
           coco: str | os.PathLike | None = None, class_names: Mapping[int, str] | None = None,
           source=None) -> dict:
    """Write the folder's labels, prompts CSV and COCO JSON where paths are given; returns counts.

    ``labels`` (a path or several) takes the form of its path (see
    :func:`napari_rpsam2.io.write_labels`): a ``.tif`` stack, a ``.nii.gz``
    volume with the affine of ``source`` (the image as
    :func:`napari_rpsam2.io.open_images` opens it), or a folder of per-frame
    PNGs named after the frames.
    """
    from ..annotations import coco_json, prompt_rows, write_coco, write_prompts_csv

    restored = folder.restore()
    summary = {"objects": len(restored.objects), "skipped_lines": restored.skipped}
    for out in [] if labels is None else [labels] if isinstance(labels, (str, os.PathLike)) else labels:
        _write_labels_in_form(folder, restored.labels, out, source)
    if prompts is not None:
        rows, left_out = prompt_rows(restored.events)
        write_prompts_csv(prompts, rows)
        summary.update(prompt_rows=len(rows), prompts_left_out=left_out)
    if coco is not None:
        data = coco_json(restored.labels, frame_names=frame_names(folder), class_names=class_names,
                         description=f"napari-rpsam2 work folder {folder.path.name}")
        write_coco(coco, data)
        summary.update(annotations=len(data["annotations"]))
    return summary
