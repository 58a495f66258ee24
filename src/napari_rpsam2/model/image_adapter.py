"""Turn any napari image slice into the RGB picture SAM2 sees.

The layer's contrast limits (and gamma) decide the mapping, so SAM2 sees what
the user sees on screen.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "ImageError",
    "LargeImageWarning",
    "MAX_ENCODER_SIDE",
    "check_image",
    "default_contrast_limits",
    "encoder_picture",
    "to_rgb_float",
    "split_stack",
]


class ImageError(ValueError):
    """An image cannot be segmented; the message says why and what to do."""


class LargeImageWarning(UserWarning):
    """A big image was downscaled before encoding (masks keep the full size)."""


MAX_ENCODER_SIDE = 2048
"""Longest side handed to the encoder; SAM2 itself works at 1024 × 1024."""

_CHUNK_ELEMENTS = 1 << 22  # elements per strip when a whole-image float copy would be big


def _as_spatial_channels(image: np.ndarray, rgb: bool | None) -> tuple[np.ndarray, bool]:
    """Return ``(array, has_channels)`` for a single 2D slice."""
    if image.ndim == 2:
        return image, False
    if image.ndim == 3 and (rgb is True or (rgb is None and image.shape[-1] in (3, 4))):
        return image, True
    if image.ndim == 3 and rgb is None and image.shape[-1] <= 5 and image.shape[0] > 5:
        return image, True
    if image.ndim == 3 and rgb is None and image.shape[-1] <= 5:
        raise ImageError(
            f"cannot tell whether shape {image.shape} is one {image.shape[0]}×{image.shape[1]} "
            f"image with {image.shape[-1]} channels or a stack; pick a single slice, or mark the "
            "last axis as colour (rgb=True)"
        )
    if image.ndim == 3 and rgb is None:
        raise ImageError(
            f"shape {image.shape} has {image.shape[-1]} values on the last axis, too many for "
            "colour channels; pick a single slice of the stack, or mark the last axis as colour "
            "(rgb=True) to average the channels"
        )
    raise ImageError(
        f"expected one 2D slice of shape (H, W) or (H, W, C), got {image.ndim} dimensions "
        f"(shape {image.shape}); pick a single slice of the stack (or split the channels into layers)"
    )


def check_image(image: np.ndarray, rgb: bool | None = None) -> tuple[np.ndarray, bool]:
    """Cheap checks (no pass over the data): returns ``(array, has_channels)``.

    Raises :class:`ImageError` for empty arrays, non-numeric or complex
    dtypes and shapes that are not one 2D slice.
    """
    image = np.asarray(image)
    if image.dtype == object:
        raise ImageError(
            "the image holds Python objects (dtype object), not numbers; convert it first, "
            "e.g. image.astype(float)"
        )
    if np.iscomplexobj(image):
        raise ImageError(
            f"complex images (dtype {image.dtype}) are not supported; take the magnitude "
            "first, e.g. np.abs(image)"
        )
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_):
        raise ImageError(
            f"cannot segment an image of dtype {image.dtype}; it must hold numbers "
            "(integers, floats or booleans)"
        )
    if image.size == 0 or 0 in image.shape:
        raise ImageError(f"the image is empty (shape {image.shape}); load image data first")
    return _as_spatial_channels(image, rgb)


def _strips(image: np.ndarray):
    """Row strips of about ``_CHUNK_ELEMENTS`` elements (views, no copies)."""
    per_row = max(1, image[:1].size)
    rows = max(1, _CHUNK_ELEMENTS // per_row)
    for r0 in range(0, image.shape[0], rows):
        yield r0, image[r0:r0 + rows]


def _finite_range(image: np.ndarray) -> tuple[float, float] | None:
    """Lowest and highest finite value, strip by strip; ``None`` if there is none."""
    if not np.issubdtype(image.dtype, np.floating):
        return float(image.min()), float(image.max())
    lo, hi = np.inf, -np.inf
    for _, strip in _strips(image):
        finite = strip[np.isfinite(strip)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (lo, hi) if lo <= hi else None


def default_contrast_limits(image: np.ndarray) -> tuple[float, float]:
    """napari-like default limits: the dtype's range for 8-bit/bool, else the data range."""
    if image.dtype == np.bool_:
        return 0.0, 1.0
    if image.dtype == np.uint8:
        return 0.0, 255.0
    found = _finite_range(image)
    if found is None:
        return 0.0, 1.0
    lo, hi = found
    if hi <= lo:  # a flat image: any increasing pair maps it to black
        hi = lo + max(1.0, abs(lo) * 1e-6)  # plain +1 is lost to rounding above 2**53
    return lo, hi


def _prepare(image, contrast_limits, gamma, rgb) -> tuple[np.ndarray, bool, float, float, float]:
    """Validate everything; returns ``(image, has_channels, low, high, gamma)``."""
    image, has_channels = check_image(image, rgb)
    try:
        gamma = float(gamma)
    except (TypeError, ValueError):
        raise ImageError(f"gamma {gamma!r} is not a number; use a positive number such as 1.0") from None
    if not (np.isfinite(gamma) and gamma > 0):
        raise ImageError(f"gamma must be a positive finite number, got {gamma}; use e.g. 1.0")
    if np.issubdtype(image.dtype, np.floating) and _finite_range(image) is None:
        raise ImageError(
            "the image holds no finite values (every pixel is NaN or infinite); "
            "there is nothing to segment, check how the data was loaded"
        )
    if contrast_limits is None:
        contrast_limits = default_contrast_limits(image)
    try:
        lo, hi = float(contrast_limits[0]), float(contrast_limits[1])
    except (TypeError, ValueError, IndexError):
        raise ImageError(f"contrast limits {contrast_limits!r} are not a (low, high) pair of numbers") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ImageError(
            f"contrast limits {tuple(contrast_limits)} are not an increasing finite pair; "
            "reset the layer's contrast limits"
        )
    return image, has_channels, lo, hi, gamma


def _map(image: np.ndarray, has_channels: bool, lo: float, hi: float, gamma: float) -> np.ndarray:
    """Contrast-map one (already validated) slice or strip to ``(h, W, 3)`` float32."""
    span = hi - lo
    # float32 unless the limits are beyond its range or too close to resolve
    extreme = max(abs(lo), abs(hi)) > 1e30 or not np.isfinite(span) or span < 1e-30 * max(1.0, abs(lo))
    work = np.float64 if extreme else np.float32
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        data = image.astype(work, copy=False)
        if np.isfinite(span):
            scaled = (data - work(lo)) / work(span)
        else:  # hi - lo overflows even float64: scale both by 1/2 first
            scaled = (data / 2 - work(lo / 2)) / work(hi / 2 - lo / 2)
        scaled = np.nan_to_num(scaled, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(scaled, 0.0, 1.0, out=scaled)
        if gamma != 1.0:
            scaled = scaled ** work(gamma)
    scaled = scaled.astype(np.float32, copy=False)

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
        NaN counts as the lowest value, +/-inf as the highest/lowest.  An
        image with no finite value at all is refused.
    contrast_limits : (low, high), optional
        Values mapped to black and white, as in the napari layer.  Default:
        the dtype range for ``uint8``/``bool``, else the finite data range.
    gamma : float
        napari's gamma (positive), applied after the contrast mapping.
    rgb : bool, optional
        Whether the last axis is colour; guessed from the shape when ``None``.

    Returns
    -------
    ndarray (H, W, 3) float32
        Channels: gray is repeated, RGBA drops alpha, 2 channels become
        red/green (napari's additive colours), 5+ channels their mean as gray.

    Raises
    ------
    ImageError
        Empty, non-numeric, complex, all-NaN or wrongly shaped images, and
        bad contrast limits or gamma; the message says what to do.
    """
    image, has_channels, lo, hi, gamma = _prepare(image, contrast_limits, gamma, rgb)
    return _map(image, has_channels, lo, hi, gamma)


def _area_matrix(n_in: int, n_out: int):
    """Sparse ``(n_out, n_in)`` area-averaging matrix; rows sum to one.

    Output cell ``i`` covers input ``[i * n_in / n_out, (i + 1) * n_in / n_out)``,
    so the outer edges of the image stay exactly where they were.
    """
    from scipy import sparse

    j = np.arange(n_in, dtype=np.float64)
    scale = n_out / n_in
    start, end = j * scale, (j + 1) * scale
    first = np.minimum(np.floor(start).astype(np.int64), n_out - 1)
    w_first = np.minimum(end, first + 1) - start
    w_next = end - (first + 1)
    spill = (w_next > 1e-12) & (first + 1 < n_out)
    rows = np.concatenate([first, first[spill] + 1])
    cols = np.concatenate([j, j[spill]]).astype(np.int64)
    data = np.concatenate([w_first, w_next[spill]]).astype(np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(n_out, n_in))


def encoder_picture(
    image: np.ndarray,
    contrast_limits: Sequence[float] | None = None,
    gamma: float = 1.0,
    rgb: bool | None = None,
    max_side: int = MAX_ENCODER_SIDE,
) -> np.ndarray:
    """The picture to hand SAM2's encoder: :func:`to_rgb_float`, downscaled if big.

    An image whose longest side exceeds ``max_side`` is contrast-mapped strip
    by strip and area-averaged to at most ``max_side`` pixels on each axis (the
    image's outer edges are kept exactly, so clicks map to the same places),
    with a :class:`LargeImageWarning`.  No float copy of the full image is made.
    SAM2 resizes every picture to 1024 × 1024 anyway, so nothing is lost.
    """
    image, has_channels, lo, hi, gamma = _prepare(image, contrast_limits, gamma, rgb)
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return _map(image, has_channels, lo, hi, gamma)
    # SAM2 resizes each axis to 1024 on its own, so each axis is capped on its own too
    h2, w2 = min(h, max_side), min(w, max_side)
    warnings.warn(
        f"the image is {h}×{w} pixels, larger than {max_side} on a side; it was downscaled to "
        f"{h2}×{w2} before encoding (SAM2 works at 1024×1024 anyway). Masks still come back "
        f"at {h}×{w}.",
        LargeImageWarning,
        stacklevel=2,
    )
    rows_m = _area_matrix(h, h2).tocsc()
    cols_m = _area_matrix(w, w2)
    out = np.zeros((h2, w2, 3), dtype=np.float32)
    for r0, strip in _strips(image):
        rgb_strip = _map(strip, has_channels, lo, hi, gamma)  # (s, W, 3)
        s = rgb_strip.shape[0]
        o_lo = min(h2 - 1, (r0 * h2) // h)
        o_hi = min(h2, -(-(r0 + s) * h2 // h))
        sub = rows_m[:, r0:r0 + s].tocsr()[o_lo:o_hi]  # output rows this strip touches
        by_row = sub @ rgb_strip.reshape(s, w * 3)  # (k, W*3)
        k = by_row.shape[0]
        by_col = cols_m @ by_row.reshape(k, w, 3).transpose(1, 0, 2).reshape(w, k * 3)  # (w2, k*3)
        out[o_lo:o_hi] += by_col.reshape(w2, k, 3).transpose(1, 0, 2)
    np.clip(out, 0.0, 1.0, out=out)
    return out


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
