"""Annotated stacks: images with instance labels, from arrays or from folders.

An *object* is one instance id on one slice.  A binary label image (a single
non-zero value in the whole stack, e.g. 0/1 or 0/255 masks) is split into
connected regions, and regions at most ``merge_gap`` pixels apart are joined
(:mod:`napari_rpsam2.training.components`: default 12 px, so the two prongs of
one forceps stay one object while two instruments are two).  Label images with
several ids are taken as instance labels as they are.

Folders: ``images/`` and ``labels/`` with matching file stems (``a.png`` ↔
``a.png`` or ``a.tif``); files are read by :mod:`napari_rpsam2.io`.  Files present on one side only are *skipped* and
listed in :attr:`AnnotatedStack.warnings`; it is an error only when no pair
matches at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..evaluation.metrics import UNLISTED_CLASS
from ..model.image_adapter import ImageError, split_stack
from .components import DEFAULT_MERGE_GAP, check_merge_gap, split_objects

__all__ = [
    "DataError", "AnnotatedObject", "AnnotatedStack", "stack_from_arrays", "stack_from_folders",
    "split_by_slice", "IMAGE_SUFFIXES", "DEFAULT_MERGE_GAP", "UNLISTED_CLASS", "list_image_files",
    "read_image_file", "read_label_file",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DEFAULT_CLASS = "object"


class DataError(ValueError):
    """Annotated data that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class AnnotatedObject:
    """One object: an instance id on one slice."""

    slice_index: int
    object_id: int
    class_name: str
    area: int


@dataclass
class AnnotatedStack:
    """Images and their instance labels, slice by slice.

    Attributes
    ----------
    images : array (N, H, W[, C]) or list of per-slice arrays
        The pictures (a list when the slices differ in size).
    labels : array (N, H, W) int32 or list
        Instance ids per slice (binary masks already split into components).
    names : list of str
        One name per slice (file stem, or ``slice 3``).
    class_names : dict int -> str
        Class name of each label id; ids not in it are ``"object"``.
    rgb : bool
        Whether the images have a colour axis.
    contrast_limits : (float, float) or None
        Display mapping used for the encoder (``None``: from the dtype).
    gamma : float
        Display gamma used for the encoder (a napari layer's ``gamma``).
    warnings : list of str
        Things that were skipped while reading (e.g. unmatched files).
    merge_gap : float or None
        Gap (px) used to join the regions of binary labels into objects;
        ``None`` for instance labels, which are taken as they are.
    """

    images: np.ndarray | list
    labels: np.ndarray | list
    names: list[str]
    class_names: dict[int, str] = field(default_factory=dict)
    rgb: bool = False
    contrast_limits: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)
    merge_gap: float | None = None
    gamma: float = 1.0

    def __len__(self) -> int:
        return len(self.names)

    def objects(self) -> list[AnnotatedObject]:
        """Every object of every slice, in slice then id order."""
        found = []
        for i in range(len(self)):
            ids, counts = np.unique(np.asarray(self.labels[i]), return_counts=True)
            for oid, area in zip(ids.tolist(), counts.tolist()):
                if oid != 0:
                    found.append(AnnotatedObject(i, int(oid), self.class_name(oid), int(area)))
        return found

    def class_name(self, object_id: int) -> str:
        """Class name of a label id."""
        return self.class_names.get(int(object_id), DEFAULT_CLASS)

    def object_mask(self, obj: AnnotatedObject) -> np.ndarray:
        """Boolean ``(H, W)`` mask of one object."""
        return np.asarray(self.labels[obj.slice_index]) == obj.object_id

    def image_hw(self, index: int) -> tuple[int, int]:
        """Height and width of slice ``index``."""
        return tuple(np.shape(self.labels[index])[:2])

    def subset(self, indices: Sequence[int]) -> "AnnotatedStack":
        """A stack of the chosen slices (same order as ``indices``)."""
        idx = [int(i) for i in indices]

        def pick(seq):
            return seq[np.asarray(idx, dtype=int)] if isinstance(seq, np.ndarray) else [seq[i] for i in idx]

        return AnnotatedStack(pick(self.images), pick(self.labels), [self.names[i] for i in idx],
                              dict(self.class_names), self.rgb, self.contrast_limits, list(self.warnings),
                              self.merge_gap, self.gamma)

    def summary(self) -> dict:
        """JSON-friendly description (stored in checkpoint headers and reports)."""
        objs = self.objects()
        per_class: dict[str, int] = {}
        for o in objs:
            per_class[o.class_name] = per_class.get(o.class_name, 0) + 1
        shapes = sorted({tuple(int(s) for s in self.image_hw(i)) for i in range(len(self))})
        return {"slices": len(self), "objects": len(objs), "objects_per_class": per_class,
                "image_sizes": [list(s) for s in shapes], "rgb": bool(self.rgb),
                "merge_gap": self.merge_gap, "names": list(self.names)[:50]}


# ---------------------------------------------------------------------- arrays
def _slice_of(bad: np.ndarray) -> str:
    """`` (slice i)`` for the first slice of a stack where ``bad`` holds; empty for one 2D image."""
    if bad.ndim < 3:
        return ""
    first = int(np.argmax(bad.reshape(-1, bad.shape[-2] * bad.shape[-1]).any(axis=1)))
    return f" (slice {first})"


def _merge_gap(merge_gap: float) -> float:
    try:
        return check_merge_gap(merge_gap)
    except ValueError as err:
        raise DataError(str(err)) from err


def _instance_labels(labels: np.ndarray, where: str, merge_gap: float | None) -> tuple[np.ndarray, bool]:
    """Integer labels; binary masks split into objects per slice (:func:`split_objects`).

    ``merge_gap=None``: the labels are known to be instance labels (e.g. one
    file of a folder that uses several ids), kept as they are even when only
    one id occurs.
    """
    arr = np.asarray(labels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise DataError(f"{where}{_slice_of(bad)}: labels must be whole numbers (instance ids), got "
                            f"{arr.dtype} values with fractions or NaN; save the labels as an integer image")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise DataError(f"{where}{_slice_of(arr < 0)}: labels contain negative ids (smallest {int(arr.min())}); "
                        "use 0 for background and 1, 2, … for objects (e.g. set labels[labels < 0] = 0)")
    values = np.unique(arr)
    nonzero = values[values != 0]
    if nonzero.size == 1 and merge_gap is not None:  # a binary mask (0/1, 0/255, …): objects are its (joined) connected regions
        out = np.stack([split_objects(s, merge_gap) for s in arr.reshape(-1, *arr.shape[-2:])])
        return out.reshape(arr.shape).astype(np.int32), True
    if arr.max(initial=0) > np.iinfo(np.int32).max:
        raise DataError(f"{where}: label ids above 2^31 are not supported")
    return arr.astype(np.int32), False


def stack_from_arrays(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    class_names: Mapping[int, str] | None = None,
    rgb: bool | None = None,
    contrast_limits: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    merge_gap: float = DEFAULT_MERGE_GAP,
    gamma: float = 1.0,
) -> AnnotatedStack:
    """Build a stack from an image ``(N, H, W[, C])`` or ``(H, W[, C])`` and labels ``(N, H, W)``.

    ``merge_gap`` (pixels, default 12): regions of *binary* labels at most
    this far apart are one object (0: every connected region is an object);
    instance labels are kept as they are.  Raises :class:`DataError` when the
    shapes disagree or no slice has an object.
    """
    gap = _merge_gap(merge_gap)
    image = np.asarray(image)
    try:
        n, has_channels = split_stack(image, rgb)
    except ImageError as err:
        raise DataError(str(err)) from err
    spatial = image.shape[:-1] if has_channels else image.shape
    labels = np.asarray(labels)
    if labels.shape != spatial:
        raise DataError(f"labels have shape {labels.shape} but the image needs {spatial} "
                        "(same slices, height and width); pick the labels that belong to this image")
    if len(spatial) == 2:
        image, labels = image[None], labels[None]
    inst, binary = _instance_labels(labels, "labels", gap)
    classes = {int(k): str(v) for k, v in (class_names or {}).items()}
    if binary and classes:
        value = int(np.unique(labels[labels != 0])[0])
        classes = {i: classes.get(value, DEFAULT_CLASS) for i in range(1, int(inst.max()) + 1)}
    stack = AnnotatedStack(image, inst, list(names) if names else [f"slice {i}" for i in range(n)], classes,
                           bool(has_channels),
                           None if contrast_limits is None else tuple(float(c) for c in contrast_limits),
                           merge_gap=gap if binary else None, gamma=float(gamma))
    if not stack.objects():
        raise DataError("the labels have no objects (all 0); paint at least one object before training "
                        "or evaluating")
    return stack


# ---------------------------------------------------------------------- folders
def _io(call, *args):
    """Call a :mod:`napari_rpsam2.io` reader, turning its ``InputError`` into :class:`DataError`."""
    from ..io import InputError

    try:
        return call(*args)
    except InputError as err:
        raise DataError(str(err)) from err


def _list_images(folder: Path, role: str) -> dict[str, Path]:
    from ..io import list_frames

    return _io(list_frames, folder, role)


def list_image_files(folder: str | os.PathLike, role: str = "images") -> list[Path]:
    """PNG/JPEG/TIFF/BMP files of a folder in natural order (``2.png`` before ``10.png``); an error if none."""
    return list(_list_images(Path(folder), role).values())


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """One image file as training reads it: ``(H, W)`` or ``(H, W, 3)`` (alpha dropped)."""
    from ..io import plane_kind, read_frame

    return _io(lambda p: plane_kind(read_frame(p), str(p)), Path(path))


def read_label_file(path: str | os.PathLike) -> np.ndarray:
    """One label file as training reads it (RGB with three equal channels → one channel)."""
    from ..io import read_label_plane

    return _io(read_label_plane, Path(path))


def _stack_limits(pics: list[np.ndarray]) -> tuple[float, float]:
    """The one contrast rule of a folder of images: their dtype's range (8-bit) or their joint range."""
    from ..io import stack_limits

    return stack_limits(pics)[0]


def _read_class_map(class_map: Mapping | str | os.PathLike | None) -> dict[int, str]:
    if class_map is None:
        return {}
    if not isinstance(class_map, Mapping):
        path = Path(class_map)
        try:
            class_map = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"cannot read class map {path}: {err}; it must be a JSON object "
                            '{"1": "forceps", …}') from err
        if not isinstance(class_map, Mapping):
            raise DataError(f"class map {path} must be a JSON object mapping id to name")
    try:
        return {int(k): str(v) for k, v in class_map.items()}
    except (TypeError, ValueError) as err:
        raise DataError(f"class map keys must be label ids (whole numbers): {err}") from err


def _unlisted_ids(classes: dict[int, str], ids: set[int], source, warnings: list[str]) -> dict[int, str]:
    """Name the label ids missing from a class map :data:`UNLISTED_CLASS`, with a warning saying which."""
    missing = sorted(i for i in ids if i not in classes)
    if not missing:
        return classes
    where = f"class map {source}" if isinstance(source, (str, os.PathLike)) else "the class map"
    shown = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    warnings.append(f"label id(s) {shown} are not in {where}; their objects are counted as class "
                    f"'{UNLISTED_CLASS}' and left out of the class average (add them to the class map to count them)")
    return {**classes, **{i: UNLISTED_CLASS for i in missing}}


def stack_from_folders(
    images_dir: str | os.PathLike,
    labels_dir: str | os.PathLike,
    *,
    class_map: Mapping | str | os.PathLike | None = None,
    merge_gap: float = DEFAULT_MERGE_GAP,
) -> AnnotatedStack:
    """Read ``images_dir`` and ``labels_dir`` (PNG/TIFF, pairs matched by file stem).

    Unmatched files are skipped and listed in ``stack.warnings``.  Images of
    different sizes are kept as lists; grey images are made RGB when the
    folder mixes grey and colour.  ``merge_gap`` as in :func:`stack_from_arrays`
    (binary label files only).
    """
    gap = _merge_gap(merge_gap)
    images = _list_images(Path(images_dir), "images")
    labels = _list_images(Path(labels_dir), "labels")
    common = [s for s in images if s in labels]
    warnings = []
    lonely_images = [images[s].name for s in images if s not in labels]
    lonely_labels = [labels[s].name for s in labels if s not in images]
    if lonely_images:
        warnings.append(f"skipped images without a label file: {', '.join(lonely_images)}")
    if lonely_labels:
        warnings.append(f"skipped label files without an image: {', '.join(lonely_labels)}")
    if not common:
        raise DataError(f"no image in {images_dir} has a label file with the same name in {labels_dir} "
                        f"(images: {', '.join(list(images)[:5])}; labels: {', '.join(list(labels)[:5])})")
    pics, labs = [], []
    for stem in common:
        pic = read_image_file(images[stem])
        lab = read_label_file(labels[stem])
        if lab.shape != pic.shape[:2]:
            raise DataError(f"{labels[stem]} is {lab.shape[0]}×{lab.shape[1]} but its image "
                            f"{images[stem]} is {pic.shape[0]}×{pic.shape[1]}; they must match")
        pics.append(pic)
        labs.append(lab)
    classes = _read_class_map(class_map)
    rgb = any(p.ndim == 3 for p in pics)
    if rgb:
        pics = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=-1) for p in pics]
    dtypes = {p.dtype for p in pics}
    if len(dtypes) > 1:
        raise DataError(f"images in {images_dir} mix pixel types {sorted(str(d) for d in dtypes)}; "
                        "save them all with the same bit depth")
    uniform = len({p.shape for p in pics}) == 1
    binary_values = {int(v) for lab in labs for v in np.unique(lab) if v != 0}
    binary = len(binary_values) == 1
    inst_labels = []
    for stem, lab in zip(common, labs):
        if binary:
            inst = split_objects(lab, gap)
        else:
            inst, _ = _instance_labels(lab, str(labels[stem]), None)  # ids as they are, even if one
        inst_labels.append(inst)
    if classes:
        classes = _unlisted_ids(classes, binary_values, class_map, warnings)
    if binary and classes:
        name = classes.get(next(iter(binary_values)), DEFAULT_CLASS)
        top = max(int(lab.max()) for lab in inst_labels)
        classes = {i: name for i in range(1, top + 1)}
    stack = AnnotatedStack(np.stack(pics) if uniform else pics,
                           np.stack(inst_labels) if uniform else inst_labels,
                           list(common), classes, rgb, _stack_limits(pics), warnings, gap if binary else None)
    if not stack.objects():
        raise DataError(f"the label files in {labels_dir} have no objects (all pixels are 0)")
    return stack


def split_by_slice(stack: AnnotatedStack, val_fraction: float = 0.2,
                   seed: int = 0) -> tuple[AnnotatedStack, AnnotatedStack]:
    """Split slices at random into (train, validation); each part gets at least one slice."""
    n = len(stack)
    if n < 2:
        raise DataError("a validation split needs at least 2 slices; annotate another slice or train "
                        "without validation")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    order = np.random.default_rng(seed).permutation(n)
    return stack.subset(sorted(order[n_val:].tolist())), stack.subset(sorted(order[:n_val].tolist()))
