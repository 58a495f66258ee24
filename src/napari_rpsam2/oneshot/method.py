"""What every one-shot method shares: the reference, per-object prompts and results.

A method is built once per reference: :meth:`OneShotMethod.set_reference`
encodes the reference slice and computes every reference-only quantity
(features, prototypes, clusters) once; :meth:`OneShotMethod.prepare` may then
learn from the whole stack (Med-PerSAM trains its warping model there);
:meth:`OneShotMethod.segment` prompts and decodes one target slice.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import jobs
from .features import ReferenceFeatures, feature_grid, reference_features
from .passes import refine_clicks

__all__ = ["ObjectResult", "SliceResult", "OneShotMethod", "object_ids_of"]


@dataclass
class ObjectResult:
    """One object on one target slice.

    Attributes
    ----------
    object_id : int
        The reference label id.
    mask : ndarray (H, W) bool
        SAM2's final mask.
    score : float
        SAM2's predicted IoU of that mask.
    points : ndarray (N, 2)
        Generated clicks ``(row, col)`` before refinement.
    labels : ndarray (N,)
        1 positive, 0 negative.
    decoded_points : ndarray (N, 2)
        The clicks SAM2 got (positive ones moved by the shift block when refining).
    box : ndarray (4,) or None
        ``(row0, col0, row1, col1)`` of the last box prompt.
    mask_prompt : ndarray (H, W) bool or None
        Med-PerSAM's warped reference mask.
    info : dict
        Method details (e.g. P²SAM's chosen part count and distances).
    """

    object_id: int
    mask: np.ndarray
    score: float
    points: np.ndarray
    labels: np.ndarray
    decoded_points: np.ndarray
    box: np.ndarray | None = None
    mask_prompt: np.ndarray | None = None
    info: dict = field(default_factory=dict)


@dataclass
class SliceResult:
    """All objects of one target slice."""

    index: int
    objects: list[ObjectResult]

    def label_plane(self, shape: tuple[int, int]) -> np.ndarray:
        """The masks as one int32 label plane (later objects do not overwrite earlier ones)."""
        out = np.zeros(shape, np.int32)
        for obj in self.objects:
            out[(out == 0) & obj.mask] = obj.object_id
        return out


def object_ids_of(labels: np.ndarray, object_ids: Sequence[int] | None = None) -> list[int]:
    """The object ids to use: all non-zero ids of ``labels`` or the chosen ones (which must be present)."""
    present = [int(i) for i in np.unique(labels) if i != 0]
    if object_ids is None:
        if not present:
            raise ValueError("the reference labels are empty: paint at least one object on the reference slice")
        return present
    missing = [int(i) for i in object_ids if int(i) not in present]
    if missing:
        raise ValueError(f"object id(s) {missing} are not on the reference slice; its ids are {present[:20]}")
    return [int(i) for i in object_ids]


class OneShotMethod:
    """Base class: reference handling, the target loop and click refinement.

    Parameters
    ----------
    model : RPSAM2
        The model (its embedding cache is used for every slice).
    refine : bool
        Move every generated positive click with the shift block first.
    contrast_limits, gamma, rgb
        How slices are mapped for the encoder (see ``RPSAM2.embed``).
    """

    name = "base"

    def __init__(self, model, *, refine: bool = False, contrast_limits=None, gamma: float = 1.0,
                 rgb: bool | None = None) -> None:
        self.model, self.refine = model, bool(refine)
        self._embed_kw = {"contrast_limits": contrast_limits, "gamma": gamma, "rgb": rgb}
        self.reference: dict[int, ReferenceFeatures] = {}
        self.reference_image: np.ndarray | None = None
        self.reference_labels: np.ndarray | None = None
        self.object_ids: list[int] = []

    # ------------------------------------------------------------ reference
    def embed(self, image: np.ndarray, key: Hashable | None = None):
        """The slice's embedding (from the model's cache when possible)."""
        return self.model.embed(image, key=key, **self._embed_kw)

    def set_reference(self, image: np.ndarray, labels: np.ndarray, object_ids: Sequence[int] | None = None,
                      *, key: Hashable | None = None) -> None:
        """Encode the reference once and compute each object's reference features."""
        labels = np.asarray(labels)
        if labels.shape != np.shape(image)[:2]:
            raise ValueError(f"reference labels are {labels.shape} but the reference slice is {np.shape(image)[:2]}")
        self.object_ids = object_ids_of(labels, object_ids)
        self.reference_image = image
        self.reference_labels = labels
        emb = self.embed(image, key)
        grid = feature_grid(self.model.backbone, emb)
        raw = feature_grid(self.model.backbone, emb, normalise=False)
        self.reference = {i: reference_features(grid, labels == i, raw=raw) for i in self.object_ids}
        self._prepare_reference(grid)

    def _prepare_reference(self, grid) -> None:
        """Per-method reference work (clustering …); called once by :meth:`set_reference`."""

    def prepare(self, images, indices: Sequence[int], *, keys: Sequence[Hashable] | None = None,
                progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None) -> None:
        """Learn from the target slices before segmenting them (nothing for PerSAM and P²SAM)."""

    # ------------------------------------------------------------ targets
    def _require_reference(self) -> None:
        if self.reference_labels is None:
            raise RuntimeError("call set_reference(image, labels) before segmenting targets")

    def segment(self, image: np.ndarray, index: int, *, key: Hashable | None = None) -> SliceResult:
        """Prompt and segment every reference object on one target slice."""
        self._require_reference()
        emb = self.embed(image, key)
        grid = feature_grid(self.model.backbone, emb)
        objects = [self._segment_object(emb, grid, oid, index) for oid in self.object_ids]
        return SliceResult(int(index), objects)

    def _segment_object(self, emb, grid, object_id: int, index: int) -> ObjectResult:
        raise NotImplementedError

    def _refine(self, emb, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        ctx = None
        if self.refine and (labels == 1).any():  # one shift-block context per slice, however many candidates
            cached = getattr(self, "_context", None)
            if cached is None or cached[0] is not emb:
                self._context = cached = (emb, self.model.image_context(emb))
            ctx = cached[1]
        return refine_clicks(self.model, emb, points, labels, self.refine, ctx)
