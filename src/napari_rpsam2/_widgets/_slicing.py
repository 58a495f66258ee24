"""Which 2D slice of a napari layer the user is looking at."""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._logic import slice_index

if TYPE_CHECKING:
    import napari

__all__ = ["NO_IMAGE_MESSAGE", "SAMPLE_MENU_PATH", "SliceError", "ImageSlice", "full_resolution", "image_slice", "slice_cache_key", "labels_plane",
           "layer_shape"]


SAMPLE_MENU_PATH = ("File", "Open Sample", "Surgical instruments (3 frames + labels) (RP-SAM2)")
"""Where napari's menus offer the plugin's sample (napari adds the plugin's name to a lone sample)."""
NO_IMAGE_MESSAGE = f"No image layer: open an image (or {' ▸ '.join(SAMPLE_MENU_PATH)})."


class SliceError(ValueError):
    """The current view cannot be used; the message says what to do."""


@dataclass
class ImageSlice:
    """One displayed 2D slice of an image layer.

    Attributes
    ----------
    layer : napari.layers.Image
    plane : ndarray (H, W) or (H, W, C)
    index : tuple of int
        Index of the leading (non-displayed) axes; ``()`` for a 2D image.
    key : hashable
        Embedding-cache key of the slice.
    rgb : bool
    """

    layer: Any
    plane: np.ndarray
    index: tuple[int, ...]
    key: Any
    rgb: bool


def full_resolution(layer: Any) -> Any:
    """A layer's array: its first (full-resolution) level if it is multiscale."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_shape(layer: Any) -> tuple[int, ...]:
    """Spatial shape of a layer (without an RGB channel axis; first level if multiscale)."""
    data = full_resolution(layer)
    return tuple(int(n) for n in np.shape(data)[: layer.ndim])


_GENERATIONS = itertools.count(1)
_LAYER_DATA: "weakref.WeakKeyDictionary[Any, list]" = weakref.WeakKeyDictionary()


def _data_generation(layer: Any) -> int:
    """A number that changes whenever the layer's data is replaced (never reused, unlike ``id()``)."""
    entry = _LAYER_DATA.get(layer)
    if entry is None:
        entry = _LAYER_DATA[layer] = [next(_GENERATIONS)]

        def renew(event=None, entry=entry) -> None:
            entry[0] = next(_GENERATIONS)

        layer.events.data.connect(renew)
    return entry[0]


def slice_cache_key(layer: Any, index: tuple[int, ...]) -> Any:
    """Embedding-cache key of slice ``index`` of an image layer (the same in every dock).

    Built from the layer's ``unique_id`` and a generation number of its data: Python reuses ``id()``
    values after a layer is deleted, so ids would let a new image be served another image's embeddings.
    """
    base = ("napari", str(layer.unique_id), _data_generation(layer))
    return (base, index[0]) if len(index) == 1 else (base, index)


def image_slice(viewer: "napari.viewer.Viewer", layer: Any, index: tuple[int, ...] | None = None) -> ImageSlice:
    """The slice of ``layer`` shown in ``viewer`` (or the one at ``index``)."""
    if layer is None:
        raise SliceError(NO_IMAGE_MESSAGE)
    data = full_resolution(layer)
    shape = layer_shape(layer)
    if index is None:
        index = ()
        if layer.ndim > 2:
            dims = viewer.dims
            if dims.ndisplay != 2 or tuple(dims.displayed[-2:]) != (dims.ndim - 2, dims.ndim - 1):
                raise SliceError("Show the image in 2D with its last two axes displayed (reset the axis order).")
            index = slice_index(layer.world_to_data(dims.point), shape)
    plane = np.asarray(data[index]) if index else np.asarray(data)
    key = slice_cache_key(layer, tuple(index))
    return ImageSlice(layer, plane, tuple(index), key, bool(layer.rgb))


def labels_plane(labels: Any, index: tuple[int, ...], hw: tuple[int, int]) -> np.ndarray:
    """The 2D plane of a Labels layer matching an image slice."""
    shape = layer_shape(labels)
    if shape[-2:] != tuple(hw):
        raise SliceError(f"The Labels layer '{labels.name}' is {shape[-2:]} per slice but the image is {tuple(hw)}; "
                         "pick the labels made for this image.")
    data = full_resolution(labels)
    lead = index[len(index) - (len(shape) - 2):] if len(shape) > 2 else ()
    if len(lead) != len(shape) - 2:
        raise SliceError(f"The Labels layer '{labels.name}' has more slice axes than the image.")
    return np.asarray(data[lead]) if lead else np.asarray(data)
