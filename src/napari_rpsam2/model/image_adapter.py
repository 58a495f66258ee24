"""Turn any napari image slice into the RGB picture SAM2 sees.

The layer's contrast limits (and gamma) decide the mapping, so SAM2 sees what
the user sees on screen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ImageError", "default_contrast_limits", "to_rgb_float", "split_stack"]


class ImageError(ValueError):
    """An image cannot be segmented; the message says why and what to do."""


def _as_spatial_channels(image: np.ndarray, rgb: bool | None) -> tuple[np.ndarray, bool]:
    """Return ``(array, has_channels)`` for a single 2D slice."""
    if image.ndim == 2:
        return image, False
    if image.ndim == 3 and (rgb is True or (rgb is None and image.shape[-1] in (3, 4))):
        return image, True
    if image.ndim == 3 and rgb is None and image.shape[-1] <= 5 and image.shape[0] > 5:
        return image, True
    raise ImageError(
        f"expected one 2D slice of shape (H, W) or (H, W, C), got shape {image.shape}; "
        "pick a single slice of the stack (or split the channels into layers)"
    )


def default_contrast_limits(image: np.ndarray) -> tuple[float, float]:
    """napari-like default limits: the dtype's range for 8-bit/bool, else the data range."""
    if image.dtype == np.bool_:
        return 0.0, 1.0
    if image.dtype == np.uint8:
        return 0.0, 255.0
    finite = image[np.isfinite(image)] if np.issubdtype(image.dtype, np.floating) else image
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def to_rgb_float(
    image: np.ndarray,
    contrast_limits: Sequence[float] | None = None,
    gamma: float = 1.0,
    rgb: bool | None = None,
) -> np.ndarray:
    """Map one slice to an ``(H, W, 3)`` float32 picture in ``[0, 1]``.

    Parameters
    ----------
    image : array (H, W) or (H, W, C)
        Grayscale, RGB, RGBA or a few channels; any numeric or bool dtype.
        NaN counts as the lowest value, +/-inf as the highest/lowest.
    contrast_limits : (low, high), optional
        Values mapped to black and white, as in the napari layer.  Default:
        the dtype range for ``uint8``/``bool``, else the finite data range.
    gamma : float
        napari's gamma, applied after the contrast mapping.
    rgb : bool, optional
        Whether the last axis is colour; guessed from the shape when ``None``.

    Returns
    -------
    ndarray (H, W, 3) float32
        Channels: gray is repeated, RGBA drops alpha, 2 channels become
        red/green (napari's additive colours), 5+ channels their mean as gray.
    """
    image = np.asarray(image)
    if image.size == 0 or 0 in image.shape:
        raise ImageError(f"the image is empty (shape {image.shape}); load image data first")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_):
        raise ImageError(f"cannot segment an image of dtype {image.dtype}; use numbers")
    if np.iscomplexobj(image):
        raise ImageError("complex images are not supported; take the magnitude first")
    image, has_channels = _as_spatial_channels(image, rgb)
    if contrast_limits is None:
        contrast_limits = default_contrast_limits(image)
    lo, hi = float(contrast_limits[0]), float(contrast_limits[1])
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ImageError(f"contrast limits {contrast_limits} are not an increasing finite pair")

    data = image.astype(np.float32, copy=False)
    scaled = (data - np.float32(lo)) / np.float32(hi - lo)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    if gamma != 1.0:
        scaled = scaled ** np.float32(gamma)

    if not has_channels:
        return np.repeat(scaled[..., None], 3, axis=-1)
    c = scaled.shape[-1]
    if c == 1:
        return np.repeat(scaled, 3, axis=-1)
    if c == 2:
        return np.concatenate([scaled, np.zeros_like(scaled[..., :1])], axis=-1)
    if c in (3, 4):
        return np.ascontiguousarray(scaled[..., :3])
    return np.repeat(scaled.mean(axis=-1, keepdims=True), 3, axis=-1)


def split_stack(image: np.ndarray, rgb: bool | None = None) -> tuple[int, bool]:
    """Tell how many slices an image holds and whether it has a colour axis.

    Returns ``(n_slices, has_channels)``; a 2D image has ``n_slices == 1`` and
    is its own only slice.  Stacks are ``(N, H, W)`` or ``(N, H, W, C)``.
    """
    image_shape = np.shape(image)
    ndim = len(image_shape)
    if rgb is None:
        rgb = ndim >= 3 and image_shape[-1] in (3, 4)
    spatial = ndim - (1 if rgb else 0)
    if spatial == 2:
        return 1, bool(rgb)
    if spatial == 3:
        return int(image_shape[0]), bool(rgb)
    raise ImageError(
        f"expected an image (H, W[, C]) or a stack (N, H, W[, C]), got shape {image_shape}"
    )
