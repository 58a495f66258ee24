"""The prompt generator: a small MONAI U-Net that proposes every class on a slice.

It works on 2D slices.  For a volume, the neighbouring slices are stacked as
extra input channels (``context`` slices on each side, the stack's edge
repeated).  Every slice is resized to a square ``input_size`` (a multiple of
16) before the network and the logits are resized back, so one checkpoint
serves any image size.  Intensities are mapped to ``[0, 1]`` between the
stack's 0.5th and 99.5th percentiles, as recorded in the checkpoint header.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["GeneratorConfig", "PromptGenerator", "SlicePrediction", "normalise_stack", "stack_limits",
           "normalise_with", "slice_input"]

_LOW, _HIGH = 0.5, 99.5  # percentiles mapped to 0 and 1


@dataclass
class GeneratorConfig:
    """What the network looks like and what it reads.

    Attributes
    ----------
    classes : list of str
        Class names; class ``i`` is output channel ``i + 1`` (channel 0 is background).
    context : int
        Neighbouring slices on each side given as extra channels (0 for single images).
    channels_per_slice : int
        1 for grey images, 3 for RGB.
    input_size : int
        Side of the square the slices are resized to (multiple of 16).
    features : tuple of 6 ints
        ``BasicUNet`` feature widths.
    """

    classes: list[str] = field(default_factory=lambda: ["object"])
    context: int = 0
    channels_per_slice: int = 1
    input_size: int = 128
    features: tuple[int, ...] = (16, 16, 32, 64, 128, 16)

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("a prompt generator needs at least one class")
        if self.input_size % 16 or self.input_size < 16:
            raise ValueError(f"input_size must be a multiple of 16 (got {self.input_size})")
        if len(self.features) != 6:
            raise ValueError("features must be six numbers (BasicUNet)")
        self.features = tuple(int(f) for f in self.features)

    @property
    def in_channels(self) -> int:
        """Network input channels."""
        return self.channels_per_slice * (2 * self.context + 1)

    def to_json(self) -> dict:
        """JSON-ready settings (stored in the checkpoint header)."""
        d = asdict(self)
        d["features"] = list(self.features)
        return d


def build_network(config: GeneratorConfig) -> torch.nn.Module:
    """A fresh ``monai.networks.nets.BasicUNet`` for ``config``."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=config.in_channels, out_channels=len(config.classes) + 1,
                     features=config.features, act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
                     norm=("instance", {"affine": True}), dropout=0.0)


def stack_limits(stack, rgb: bool) -> tuple[float, float]:
    """The stack's 0.5th and 99.5th intensity percentiles (on a sparse sample, at most ~256² per slice).

    Reads only the sample, so a lazy stack is not loaded whole.
    """
    h, w = np.shape(stack)[1:3]
    sample = np.asarray(stack[:, :: max(1, h // 256), :: max(1, w // 256)], dtype=np.float32)
    lo, hi = np.percentile(sample, [_LOW, _HIGH])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def normalise_with(stack, limits: tuple[float, float], rgb: bool) -> np.ndarray:
    """``(Z, H, W[, 3])`` float32 in ``[0, 1]`` between ``limits``; a grey stack gets one channel: ``(Z, H, W, C)``."""
    x = np.asarray(stack, dtype=np.float32)
    if not rgb:
        x = x[..., None]
    lo, hi = limits
    return np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32, copy=False)


def normalise_stack(stack: np.ndarray, rgb: bool) -> np.ndarray:
    """``(Z, H, W[, 3])`` float32 in ``[0, 1]`` between the stack's 0.5th/99.5th percentiles.

    Channels last for RGB; a grey stack gets one channel: ``(Z, H, W, C)``.
    """
    return normalise_with(stack, stack_limits(stack, rgb), rgb)


def slice_input(norm: np.ndarray, index: int, context: int) -> np.ndarray:
    """Channels ``(C·(2·context+1), H, W)`` of slice ``index`` and its neighbours (edges repeated)."""
    z = norm.shape[0]
    picks = [min(max(index + d, 0), z - 1) for d in range(-context, context + 1)]
    return np.concatenate([np.moveaxis(norm[i], -1, 0) for i in picks], axis=0)


def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, C, h, w)`` (antialiased when shrinking)."""
    shrink = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=shrink)


@dataclass
class SlicePrediction:
    """The generator's output for one slice, at the slice's own size.

    Attributes
    ----------
    logits : ndarray (K+1, H, W) float32
        Softmax logits (channel 0 background).
    probabilities : ndarray (K+1, H, W) float32
        Softmax of ``logits``.
    classes : list of str
        Names of channels 1..K.
    """

    logits: np.ndarray
    probabilities: np.ndarray
    classes: list[str]

    def class_logits(self, class_index: int) -> np.ndarray:
        """Log-odds ``log p / (1 − p)`` of class ``class_index`` (1-based) against the rest, (H, W)."""
        p = np.clip(self.probabilities[class_index].astype(np.float64), 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p)).astype(np.float32)

    def class_map(self) -> np.ndarray:
        """Arg-max class per pixel, (H, W) int (0 background)."""
        return self.probabilities.argmax(axis=0).astype(np.int32)


class PromptGenerator:
    """A U-Net and its settings; ``predict`` one slice of a stack."""

    def __init__(self, network: torch.nn.Module, config: GeneratorConfig, header: dict | None = None) -> None:
        self.network = network.eval()
        self.config = config
        self.header: dict = header or {}

    @classmethod
    def create(cls, config: GeneratorConfig, seed: int = 0) -> "PromptGenerator":
        """A fresh, untrained generator (seeded)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_network(config)
        return cls(net, config)

    @property
    def classes(self) -> list[str]:
        """Class names (1-based in the outputs)."""
        return list(self.config.classes)

    @property
    def device(self) -> torch.device:
        """Where the network lives."""
        return next(self.network.parameters()).device

    def to(self, device: str | torch.device) -> "PromptGenerator":
        """Move the network (returns ``self``)."""
        self.network.to(device)
        return self

    def parameter_count(self) -> int:
        """Number of network parameters."""
        return sum(p.numel() for p in self.network.parameters())

    def check_stack(self, stack: np.ndarray, rgb: bool) -> None:
        """Raise ``ValueError`` when ``stack`` does not have the channels the generator was trained on."""
        want = self.config.channels_per_slice
        have = 3 if rgb else 1
        if want != have:
            kinds = {1: "grey", 3: "RGB"}
            raise ValueError(f"the prompt generator was trained on {kinds.get(want, want)} images but these are "
                             f"{kinds.get(have, have)}; train a generator on images like these")

    @torch.no_grad()
    def predict_normalised(self, norm: np.ndarray, index: int) -> SlicePrediction:
        """Prediction for slice ``index`` of a stack already passed through :func:`normalise_stack`."""
        h, w = norm.shape[1:3]
        x = torch.from_numpy(slice_input(norm, index, self.config.context)).unsqueeze(0).to(self.device)
        s = self.config.input_size
        logits = self.network(resize(x, (s, s)))
        logits = resize(logits, (h, w))[0].float()
        probs = torch.softmax(logits, dim=0)
        return SlicePrediction(logits.cpu().numpy(), probs.cpu().numpy(), self.classes)

    def predict(self, stack: np.ndarray, index: int, *, rgb: bool | None = None) -> SlicePrediction:
        """Prediction for slice ``index`` of ``stack`` ``(Z, H, W[, 3])`` (or one ``(H, W[, 3])`` image)."""
        stack, rgb = as_stack(stack, rgb)
        self.check_stack(stack, rgb)
        return self.predict_normalised(normalise_stack(stack, rgb), index)


def as_stack(image: np.ndarray, rgb: bool | None = None) -> tuple[np.ndarray, bool]:
    """``(Z, H, W[, 3])`` and whether it is RGB; a single image becomes a stack of one."""
    a = np.asarray(image)
    if rgb is None:
        rgb = a.ndim in (3, 4) and a.shape[-1] == 3
    if (rgb and a.ndim == 3) or (not rgb and a.ndim == 2):
        a = a[None]
    if a.ndim != (4 if rgb else 3):
        raise ValueError(f"expected an image (H, W), (H, W, 3) or a stack of them, got shape {a.shape}")
    return a, bool(rgb)
