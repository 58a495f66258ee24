"""Automatic segmentation use cases: train a prompt generator, run it (with SAM2), measure it.

Both front ends call these.  Files are read through :func:`read_image` and
:func:`read_labels` only, so the readers can be swapped in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import jobs
from ..autoseg import (
    GeneratorConfig,
    GeneratorData,
    GeneratorTrainConfig,
    GeneratorTrainResult,
    PromptGenerator,
    save_generator,
    train_generator,
)
from ..autoseg.follow import FollowOptions
from ..autoseg.refine import RefineOptions
from ..autoseg.run import AutosegResult, autosegment
from ..training.data import DataError

__all__ = ["read_image", "read_labels", "image_files", "read_folder_stack", "class_table",
           "generator_data_from_folders", "train_generator_from_folders", "FolderRun", "run_folder",
           "evaluate_folder", "check_stack_files"]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file as ``(H, W)`` or ``(H, W, 3)`` (the one place images are read)."""
    from ..training.data import read_image_file

    return read_image_file(path)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """One label file as ``(H, W)`` ids (the one place labels are read)."""
    from ..training.data import read_label_file

    return read_label_file(path)


def image_files(folder: str | os.PathLike, role: str = "images") -> list[Path]:
    """The image files of a folder, sorted by name (a clear error when there are none)."""
    from ..training.data import list_image_files

    return list_image_files(folder, role)


def _mismatch(path: Path, hw: tuple[int, int], first: Path, first_hw: tuple[int, int]) -> DataError:
    return DataError(f"{path.name} is {hw[0]}×{hw[1]} but {first.name} is {first_hw[0]}×{first_hw[1]}; "
                     "following objects needs the frames of one stack, all of one size")


def check_stack_files(files: Sequence[Path]) -> None:
    """Refuse, from the file headers only, image files that are not all of one size (before a long run)."""
    from PIL import Image

    sizes = []
    for path in files:
        try:
            with Image.open(path) as im:
                sizes.append((im.height, im.width))
        except OSError:
            sizes.append(read_image(path).shape[:2])
        if sizes[-1] != sizes[0]:
            raise _mismatch(path, sizes[-1], files[0], sizes[0])


def read_folder_stack(files: Sequence[Path], rgb: bool = False) -> np.ndarray:
    """The image files as one stack ``(Z, H, W[, 3])`` in their order (frames of one video or volume).

    Grey images become RGB when ``rgb`` or when any of them is RGB; images of
    another size than the first are refused with both names.
    """
    images = [read_image(p) for p in files]
    first = images[0].shape[:2]
    for path, im in zip(files, images):
        if im.shape[:2] != first:
            raise _mismatch(path, im.shape[:2], files[0], first)
    if rgb or any(im.ndim == 3 for im in images):
        images = [_as_rgb(im) for im in images]
    return np.stack(images)


def _pairs(images_dir, labels_dir) -> list[tuple[Path, Path]]:
    labels = {p.stem: p for p in image_files(labels_dir, "labels")}
    pairs = [(p, labels[p.stem]) for p in image_files(images_dir) if p.stem in labels]
    if not pairs:
        raise DataError(f"no image in {images_dir} has a label file with the same name in {labels_dir}")
    return pairs


def class_table(label_values: Sequence[int], class_map: Mapping[int, str] | None) -> tuple[list[str], dict[int, int]]:
    """Class names and the label value → 1-based class index table.

    With a class map every label value must be named (several values may share a class:
    instance labels with a class table).  Without one, each value is a class named by its
    number (a single value, e.g. a binary mask, is class ``object``).
    """
    values = sorted({int(v) for v in label_values if v != 0})
    if not values:
        raise DataError("the label files have no labelled pixels (all 0); annotate some objects first")
    if class_map:
        missing = [v for v in values if v not in class_map]
        if missing:
            raise DataError(f"label ids {missing[:5]} are not in the class map; give each id a class name")
        names = list(dict.fromkeys(class_map[v] for v in values))
        return names, {v: names.index(class_map[v]) + 1 for v in values}
    if len(values) == 1:
        return ["object"], {values[0]: 1}
    return [str(v) for v in values], {v: i + 1 for i, v in enumerate(values)}


def _class_ids(labels: np.ndarray, table: Mapping[int, int]) -> np.ndarray:
    lut = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    for value, k in table.items():
        if value < lut.size:
            lut[value] = k
    return lut[labels.astype(np.int64)]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)


def generator_data_from_folders(images_dir, labels_dir, class_map: Mapping[int, str] | str | None = None
                                ) -> tuple[GeneratorData, list[str]]:
    """Annotated image files (pairs by file name) as generator data; also returns the file names used."""
    from ..training.data import _read_class_map

    pairs = _pairs(images_dir, labels_dir)
    images = [read_image(p) for p, _ in pairs]
    labels = [read_labels(q) for _, q in pairs]
    for (p, q), im, lab in zip(pairs, images, labels):
        if lab.shape != im.shape[:2]:
            raise DataError(f"{q} is {lab.shape[0]}×{lab.shape[1]} but its image {p} is "
                            f"{im.shape[0]}×{im.shape[1]}; they must match")
    names, table = class_table(np.unique(np.concatenate([np.unique(x) for x in labels])),
                               _read_class_map(class_map))
    rgb = any(im.ndim == 3 for im in images)
    stacks = [(_as_rgb(im) if rgb else im)[None] for im in images]
    maps = [_class_ids(lab, table)[None] for lab in labels]
    return GeneratorData(stacks, maps, names, rgb), [p.name for p, _ in pairs]


def train_generator_from_folders(
    images_dir, labels_dir, out: str | os.PathLike, *, class_map=None,
    config: GeneratorConfig | None = None, train_config: GeneratorTrainConfig = GeneratorTrainConfig(),
    progress: jobs.Progress | None = None, on_epoch: Callable | None = None, cancel: jobs.Cancel | None = None,
) -> GeneratorTrainResult:
    """Train a generator on annotated files and write it to ``out`` (only when training finished).

    Inside a ``torchrun`` process group every process trains its share of each batch (DDP);
    the first process writes the file.
    """
    from ..training import ddp

    data, files = generator_data_from_folders(images_dir, labels_dir, class_map)
    result = train_generator(data, config or GeneratorConfig(), train_config, progress=progress,
                             on_epoch=on_epoch, cancel=cancel, distributed=ddp if ddp.is_distributed() else None)
    if ddp.rank_and_world()[0] != 0:
        return result
    training = {"images": len(files), "classes": data.classes, "epochs": train_config.epochs,
                "best_epoch": result.best_epoch, "train_slices": result.n_train, "val_slices": result.n_val,
                "lr": train_config.lr, "batch_size": train_config.batch_size, "augment": train_config.augment,
                "seed": train_config.seed}
    save_generator(out, result.generator, training=training, metrics={"val_dice": result.best_val_dice})
    return result


@dataclass
class FolderRun:
    """What :func:`run_folder` found: per file, its result."""

    files: list[str]
    results: list[AutosegResult]


def _segment_files(model, generator: PromptGenerator, files: Sequence[Path], options: RefineOptions,
                   progress, cancel, tracking: FollowOptions = FollowOptions()) -> list[AutosegResult]:
    rgb = generator.config.channels_per_slice == 3
    if options.follow:  # the files are the slices of one stack
        stack = read_folder_stack(files, rgb)
        whole = autosegment(model, generator, stack, options=options, follow=tracking, rgb=stack.ndim == 4,
                            progress=progress, cancel=cancel)
        return [_one_slice(whole, z) for z in range(len(files))]
    results = []
    for i, path in enumerate(files):
        jobs.check(cancel, "automatic segmentation")
        jobs.report(progress, "images", i, len(files))
        image = read_image(path)
        if rgb:
            image = _as_rgb(image)
        results.append(autosegment(model, generator, image, options=options, rgb=image.ndim == 3, cancel=cancel))
    jobs.report(progress, "images", len(files), len(files))
    return results


def _one_slice(result: AutosegResult, z: int) -> AutosegResult:
    """Slice ``z`` of a stack's result as a one-image result (objects listed on their key slice)."""
    return AutosegResult(result.labels[z:z + 1], result.classes[z:z + 1], result.class_names,
                         [o for o in result.objects if o.slice_index == z])


def run_folder(model, generator: PromptGenerator, images_dir, out_dir: str | os.PathLike,
               options: RefineOptions = RefineOptions(), *, tracking: FollowOptions = FollowOptions(),
               progress=None, cancel=None) -> FolderRun:
    """Segment every image of a folder; write ``<out>/<name>.tif`` (instances) and ``<out>/classes/<name>.tif``.

    With ``options.follow`` the images are the slices of one stack (in name
    order) and each object is followed through them from its key slice: it
    keeps its id on every slice, and ``objects.csv`` lists it once, on its key
    slice's file, with the first and last file it reached.  Nothing is written
    until every image is done (a cancelled run writes nothing); each file is
    written atomically, with ``objects.csv`` listing every object.  ``tracking``:
    direction and stop rule of the following.
    """
    files = image_files(images_dir)
    results = _segment_files(model, generator, files, options, progress, cancel, tracking)
    out = Path(out_dir)
    (out / "classes").mkdir(parents=True, exist_ok=True)
    rows = []
    extra_header = ("first", "last") if options.follow else ()
    for path, res in zip(files, results):
        _write_tif(out / f"{path.stem}.tif", res.labels[0])
        _write_tif(out / "classes" / f"{path.stem}.tif", res.classes[0].astype(np.uint16))
        for o in res.objects:
            extra = (files[o.slices[0]].name, files[o.slices[1]].name) if extra_header else ()
            rows.append((path.name, o.label, o.class_name, f"{o.score:.4f}", o.area, *extra))
    header = ("file", "label", "class", "score", "area", *extra_header)
    _write_csv(out / "objects.csv", header, rows)
    return FolderRun([p.name for p in files], results)


def _write_tif(path: Path, array: np.ndarray) -> None:
    import tifffile

    from .._atomic import atomic_write

    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array, compression="zlib"))


def _write_csv(path: Path, header: Sequence[str], rows: list[tuple]) -> None:
    import csv

    from .._atomic import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)

    atomic_write(path, write)


def _class_scores(results: Sequence[AutosegResult], truth: Sequence[np.ndarray], classes: Sequence[str],
                  hd95_convention: str) -> dict:
    """Per class Dice (%) and HD95 (px), mean over the images where it is in the truth or the prediction."""
    from ..evaluation.metrics import dice, hd95

    per_class = {}
    for k, name in enumerate(classes, start=1):
        d, h = [], []
        for res, gt in zip(results, truth):
            p, g = res.classes[0] == k, gt == k
            if p.any() or g.any():
                d.append(100 * dice(p, g))
                h.append(hd95(p, g, hd95_convention))
        per_class[name] = {"dice": float(np.mean(d)) if d else None, "hd95": float(np.mean(h)) if h else None,
                           "images": len(d)}
    scored = [v for v in per_class.values() if v["dice"] is not None]
    return {"per_class": per_class,
            "mean_dice": float(np.mean([v["dice"] for v in scored])) if scored else None,
            "mean_hd95": float(np.mean([v["hd95"] for v in scored])) if scored else None}


def evaluate_folder(model, generator: PromptGenerator, images_dir, labels_dir, *, class_map=None,
                    stages: Sequence[int] = (0, 1, 2), options: RefineOptions = RefineOptions(),
                    follow: bool = False, tracking: FollowOptions = FollowOptions(),
                    hd95_convention: str = "pooled", progress=None, cancel=None) -> dict:
    """Dice (%) and HD95 (px) per class of the class maps, for each number of refinement stages.

    The truth is read as for training (``class_map`` names label ids; without it ids are
    matched to the generator's class names, a single value to its only class).
    Per class, the mean over the images where the class is in the truth or the prediction.
    With ``follow`` one more row, ``"<most stages> + follow"``: the images as the
    slices of one stack, each object followed from its key slice (``RefineOptions.follow``).
    """
    from dataclasses import replace

    data, files = generator_data_from_folders(images_dir, labels_dir, class_map)
    unknown = [c for c in data.classes if c not in generator.classes]
    if unknown and not (len(data.classes) == 1 and len(generator.classes) == 1):
        raise DataError(f"classes {unknown} of the labels are not among the generator's {generator.classes}; "
                        "give a class map whose names match the generator's classes")
    rename = {i + 1: (generator.classes.index(c) + 1 if c in generator.classes else 1)
              for i, c in enumerate(data.classes)}
    truth = [_class_ids(m[0], rename) for m in data.class_maps]
    report: dict = {"files": files, "classes": generator.classes, "hd95_convention": hd95_convention, "stages": {}}
    rows = [(str(s), replace(options, stages=int(s), follow=False)) for s in stages]
    if follow:
        rows.append((f"{max(stages)} + follow", replace(options, stages=int(max(stages)), follow=True)))
    for n, (name, row_options) in enumerate(rows):
        results = _segment_files(model, generator, [Path(images_dir) / f for f in files], row_options,
                                 progress, cancel, tracking)
        jobs.report(progress, "stages", n + 1, len(rows))
        report["stages"][name] = _class_scores(results, truth, generator.classes, hd95_convention)
    return report
