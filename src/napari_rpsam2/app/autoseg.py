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
from ..autoseg.refine import RefineOptions
from ..autoseg.run import AutosegResult, autosegment
from ..training.data import DataError

__all__ = ["read_image", "read_labels", "image_files", "class_table", "generator_data_from_folders",
           "train_generator_from_folders", "FolderRun", "run_folder", "evaluate_folder"]


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
                   progress, cancel) -> list[AutosegResult]:
    rgb = generator.config.channels_per_slice == 3
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


def run_folder(model, generator: PromptGenerator, images_dir, out_dir: str | os.PathLike,
               options: RefineOptions = RefineOptions(), *, progress=None, cancel=None) -> FolderRun:
    """Segment every image of a folder; write ``<out>/<name>.tif`` (instances) and ``<out>/classes/<name>.tif``.

    Nothing is written until every image is done (a cancelled run writes nothing);
    each file is written atomically, with ``objects.csv`` listing every object.
    """
    files = image_files(images_dir)
    results = _segment_files(model, generator, files, options, progress, cancel)
    out = Path(out_dir)
    (out / "classes").mkdir(parents=True, exist_ok=True)
    rows = []
    for path, res in zip(files, results):
        _write_tif(out / f"{path.stem}.tif", res.labels[0])
        _write_tif(out / "classes" / f"{path.stem}.tif", res.classes[0].astype(np.uint16))
        rows += [(path.name, o.label, o.class_name, f"{o.score:.4f}", o.area) for o in res.objects]
    _write_csv(out / "objects.csv", ("file", "label", "class", "score", "area"), rows)
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


def evaluate_folder(model, generator: PromptGenerator, images_dir, labels_dir, *, class_map=None,
                    stages: Sequence[int] = (0, 1, 2), options: RefineOptions = RefineOptions(),
                    hd95_convention: str = "pooled", progress=None, cancel=None) -> dict:
    """Dice (%) and HD95 (px) per class of the class maps, for each number of refinement stages.

    The truth is read as for training (``class_map`` names label ids; without it ids are
    matched to the generator's class names, a single value to its only class).
    Per class, the mean over the images where the class is in the truth or the prediction.
    """
    from dataclasses import replace

    from ..evaluation.metrics import dice, hd95

    data, files = generator_data_from_folders(images_dir, labels_dir, class_map)
    unknown = [c for c in data.classes if c not in generator.classes]
    if unknown and not (len(data.classes) == 1 and len(generator.classes) == 1):
        raise DataError(f"classes {unknown} of the labels are not among the generator's {generator.classes}; "
                        "give a class map whose names match the generator's classes")
    rename = {i + 1: (generator.classes.index(c) + 1 if c in generator.classes else 1)
              for i, c in enumerate(data.classes)}
    truth = [_class_ids(m[0], rename) for m in data.class_maps]
    report: dict = {"files": files, "classes": generator.classes, "hd95_convention": hd95_convention, "stages": {}}
    for n, stage in enumerate(stages):
        results = _segment_files(model, generator, [Path(images_dir) / f for f in files],
                                 replace(options, stages=int(stage)), progress, cancel)
        jobs.report(progress, "stages", n + 1, len(stages))
        per_class = {}
        for k, name in enumerate(generator.classes, start=1):
            d, h = [], []
            for res, gt in zip(results, truth):
                p, g = res.classes[0] == k, gt == k
                if p.any() or g.any():
                    d.append(100 * dice(p, g))
                    h.append(hd95(p, g, hd95_convention))
            per_class[name] = {"dice": float(np.mean(d)) if d else None, "hd95": float(np.mean(h)) if h else None,
                               "images": len(d)}
        scored = [v for v in per_class.values() if v["dice"] is not None]
        report["stages"][str(stage)] = {
            "per_class": per_class,
            "mean_dice": float(np.mean([v["dice"] for v in scored])) if scored else None,
            "mean_hd95": float(np.mean([v["hd95"] for v in scored])) if scored else None,
        }
    return report
