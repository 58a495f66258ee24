"""Grid-sensitivity heatmap: the Dice one gets by clicking each grid point of an object.

Built on :func:`napari_rpsam2.evaluation.grid_dice.grid_dice`, the same code
the trainer uses for its candidate sets, so the heatmap a user sees and the
candidates the shift block learns from can never disagree.  Qt-free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from .grid_dice import grid_dice

__all__ = ["SensitivityMap", "heatmap", "LOW_DICE"]

LOW_DICE = 0.5
"""A click whose mask has Dice below this counts as a bad click in :meth:`SensitivityMap.stats`."""


@dataclass
class SensitivityMap:
    """Per-click Dice over one object.

    Attributes
    ----------
    dice_map : ndarray (H, W) float32
        Each grid point's Dice painted on its grid cell, in ``[0, 1]``;
        NaN outside the grid cells.
    points : ndarray (K, 2) float
        The grid points ``(row, col)`` that were clicked.
    dice : ndarray (K,) float
        Dice of the mask from each grid point.
    stride : float
        Grid spacing in pixels.
    refine : bool
        Whether clicks were moved by the shift block (RP-SAM2) or not (SAM2).
    """

    dice_map: np.ndarray
    points: np.ndarray
    dice: np.ndarray
    stride: float
    refine: bool

    @property
    def method(self) -> str:
        """``"rpsam2"`` for refined clicks, ``"sam2"`` otherwise."""
        return "rpsam2" if self.refine else "sam2"

    def stats(self) -> dict[str, float]:
        """Summary over the grid points (each click counts once).

        Returns
        -------
        dict
            ``mean``, ``std``, ``min`` Dice, ``share_below_0.5`` (fraction of
            clicks with Dice < 0.5) and ``points`` (number of clicks).
        """
        d = np.asarray(self.dice, dtype=np.float64)
        if d.size == 0:
            return {"mean": float("nan"), "std": float("nan"), "min": float("nan"),
                    f"share_below_{LOW_DICE}": float("nan"), "points": 0}
        return {
            "mean": float(d.mean()),
            "std": float(d.std()),
            "min": float(d.min()),
            f"share_below_{LOW_DICE}": float((d < LOW_DICE).mean()),
            "points": int(d.size),
        }

    def save_png(self, path: str | os.PathLike, image: np.ndarray | None = None,
                 mask: np.ndarray | None = None, title: str | None = None) -> Path:
        """Write an overlay figure (image, heatmap in 0–1 viridis, object outline), atomically."""
        return save_maps_png(path, [self], image=image, mask=mask, title=title)


def save_maps_png(path: str | os.PathLike, maps: Sequence[SensitivityMap],
                  image: np.ndarray | None = None, mask: np.ndarray | None = None,
                  title: str | None = None) -> Path:
    """One panel per map (e.g. SAM2 and RP-SAM2 side by side), written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not maps:
        raise ValueError("no heatmap to draw")
    h, w = maps[0].dice_map.shape
    panel_w = 5.0
    fig = Figure(figsize=(panel_w * len(maps) + 0.8, panel_w * h / w + 0.9), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    shown = None
    for ax, smap in zip(axes, maps):
        if image is not None:
            ax.imshow(_display(image), cmap="gray" if np.ndim(image) == 2 else None)
        shown = ax.imshow(np.ma.masked_invalid(smap.dice_map), cmap="viridis", vmin=0.0, vmax=1.0,
                          alpha=0.75 if image is not None else 1.0, interpolation="nearest")
        if mask is not None and np.any(mask):
            ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="white", linewidths=0.8)
        if len(smap.points):
            ax.scatter(smap.points[:, 1], smap.points[:, 0], s=2, c="black", linewidths=0)
        s = smap.stats()
        ax.set_title(f"{smap.method}: Dice {s['mean']:.3f} ± {s['std']:.3f}, min {s['min']:.3f}, "
                     f"<{LOW_DICE}: {100 * s[f'share_below_{LOW_DICE}']:.0f}%", fontsize=8)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_axis_off()
    if shown is not None:
        fig.colorbar(shown, ax=list(axes), fraction=0.03, pad=0.02, label="Dice of the click's mask")
    if title:
        fig.suptitle(title, fontsize=9)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def _display(image: np.ndarray) -> np.ndarray:
    """Scale an image to ``[0, 1]`` floats for display (RGB kept as RGB)."""
    arr = np.asarray(image, dtype=np.float32)
    lo, hi = np.nanpercentile(arr, (0.5, 99.5)) if arr.size else (0.0, 1.0)
    if not hi > lo:
        hi = lo + 1.0
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0)


def heatmap(
    model,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    stride: int | None = None,
    refine: bool = False,
    chunk_size: int | None = None,
    contrast_limits: Sequence[float] | None = None,
    gamma: float = 1.0,
    rgb: bool | None = None,
    key: Hashable | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SensitivityMap:
    """Grid-sensitivity map of one object.

    Parameters
    ----------
    model : RPSAM2
        The model (its embedding cache is used for ``image``).
    image : array (H, W) or (H, W, C)
        One 2D slice.
    mask : array (H, W)
        The object (non-zero = inside).
    stride : int, optional
        Grid spacing in whole pixels; by default the candidate code's choice
        (about 8×8…16×16 points inside the object).
    refine : bool
        Move each grid click with the shift block first (RP-SAM2).
    progress, cancel
        ``progress(done, total)`` over grid points; ``cancel()`` stops early.

    Returns
    -------
    SensitivityMap

    Raises
    ------
    ValueError
        Empty mask, or mask and image of different sizes.
    napari_rpsam2.jobs.Cancelled
        When ``cancel()`` turned true (checked between chunks of clicks).
    """
    mask = np.asarray(mask) != 0
    image = np.asarray(image)
    if mask.ndim != 2:
        raise ValueError(f"the object mask must be 2D, got shape {mask.shape}")
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    if not mask.any():
        raise ValueError("the object mask is empty; pick an object id that is in the labels")
    if stride is not None and not (float(stride).is_integer() and stride >= 1):
        raise ValueError(f"grid stride must be a whole number of pixels ≥ 1, got {stride}")
    emb = model.embed(image, contrast_limits=contrast_limits, gamma=gamma, rgb=rgb, key=key)
    grid = grid_dice(model, emb, mask, stride=stride, refine=refine, chunk_size=chunk_size,
                     progress=progress, cancel=cancel)
    dice_map = np.asarray(grid.to_map(), dtype=np.float32)
    return SensitivityMap(dice_map=dice_map, points=np.asarray(grid.points, dtype=np.float64),
                          dice=np.asarray(grid.dice, dtype=np.float64), stride=float(grid.stride),
                          refine=refine)
