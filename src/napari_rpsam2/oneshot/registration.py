"""Test-time trained registration of one reference slice onto the other slices of a stack.

The warping model is two MONAI networks: ``GlobalNet`` predicts an affine
displacement field from the (reference, target) pair, then ``LocalNet``
predicts a deformable field from the (affinely warped reference, target)
pair.  Both work on small grey pictures (``WarpConfig.size`` squared, SAM2's
own anisotropic resize); their fields are composed and scaled to each slice's
size to warp the reference labels.  Losses are MONAI's: local normalised
cross-correlation between the warped reference and the target, bending energy
of the deformable field, and DiceCE between the warped reference mask and
either an augmented reference mask (the augmentation loss) or SAM2's output
(pseudo-labels, when retraining).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .. import jobs

AFFINE_HEAD_LR = 0.01  # relative step of GlobalNet's dense affine head

__all__ = ["WarpConfig", "WarpModel", "grey_picture", "train_warp", "warp_labels", "one_hot"]


@dataclass(frozen=True)
class WarpConfig:
    """Settings of the warping model and its training.

    ``steps`` optimiser steps for the first training; each retraining round
    runs ``retrain_epochs`` passes over the targets (the paper: 10), or exactly
    ``retrain_steps`` steps when that is set.  Each step sees ``batch`` targets
    and ``batch`` augmented copies of the reference.
    """

    size: int = 64
    channels: int = 8
    steps: int = 150
    retrain_steps: int | None = None
    retrain_epochs: int = 10
    batch: int = 4
    lr: float = 1e-3
    ncc_kernel: int = 9
    smooth_weight: float = 1.0
    aug_weight: float = 1.0
    pseudo_weight: float = 1.0
    max_rotation: float = 0.35
    max_scale: float = 0.2
    max_shift: float = 0.15
    seed: int = 0


class WarpModel(torch.nn.Module):
    """Affine then deformable registration (MONAI ``GlobalNet`` + ``LocalNet``)."""

    def __init__(self, config: WarpConfig = WarpConfig()) -> None:
        super().__init__()
        from monai.networks.blocks import Warp
        from monai.networks.nets import GlobalNet, LocalNet

        s, c = config.size, config.channels
        self.affine = GlobalNet(image_size=[s, s], spatial_dims=2, in_channels=2, num_channel_initial=c, depth=2)
        self.local = LocalNet(spatial_dims=2, in_channels=2, out_channels=2, num_channel_initial=c,
                              extract_levels=(0, 1, 2), out_kernel_initializer="zeros")
        self.warp = Warp(mode="bilinear", padding_mode="border")

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fields (B, 2, s, s) in pixels: the composed one and the deformable part alone."""
        ddf_affine = self.affine(torch.cat([moving, fixed], 1))
        moved = self.warp(moving, ddf_affine)
        ddf_local = self.local(torch.cat([moved, fixed], 1))
        return ddf_local + self.warp(ddf_affine, ddf_local), ddf_local

    def parameter_count(self) -> int:
        """Trainable parameters of both networks."""
        return sum(p.numel() for p in self.parameters())


def grey_picture(image: np.ndarray, size: int) -> torch.Tensor:
    """A slice as a (1, size, size) grey picture, zero mean and unit variance."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(-1)
    t = torch.as_tensor(arr)[None, None]
    t = F.interpolate(t, size=(size, size), mode="area")[0]
    return (t - t.mean()) / (t.std() + 1e-6)


def one_hot(labels: np.ndarray, object_ids: Sequence[int], size: int | None = None) -> torch.Tensor:
    """(1 + K, H, W) float one-hot of background and the objects (resized to ``size`` by area)."""
    lab = np.asarray(labels)
    planes = [lab == i for i in object_ids]
    fg = np.stack(planes).astype(np.float32) if planes else np.zeros((0, *lab.shape), np.float32)
    t = torch.as_tensor(np.concatenate([1.0 - fg.sum(0, keepdims=True).clip(0, 1), fg]))
    if size is not None:
        t = F.interpolate(t[None], size=(size, size), mode="area")[0]
    return t


def _random_affine(n: int, config: WarpConfig, gen: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) affine matrices for ``affine_grid`` (rotation, scale, shift)."""
    u = torch.rand(n, 4, generator=gen) * 2 - 1
    angle, scale = u[:, 0] * config.max_rotation, 1 + u[:, 1] * config.max_scale
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    shift = u[:, 2:] * config.max_shift * 2
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


def _augment(ref: torch.Tensor, ref_mask: torch.Tensor, n: int, config: WarpConfig,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` randomly moved and re-contrasted copies of the reference picture and its one-hot mask."""
    theta = _random_affine(n, config, gen)
    grid = F.affine_grid(theta, (n, 1, config.size, config.size), align_corners=False)
    img = F.grid_sample(ref.expand(n, -1, -1, -1), grid, padding_mode="border", align_corners=False)
    mask = F.grid_sample(ref_mask.expand(n, -1, -1, -1), grid, padding_mode="border", align_corners=False)
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.2
    bright = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.2
    return img * contrast + bright, mask


def _param_groups(model: WarpModel, lr: float) -> list[dict]:
    """The affine head maps thousands of features to 6 numbers: it gets a much smaller step."""
    head = [p for n, p in model.affine.named_parameters() if n.startswith("output_block")]
    ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": head, "lr": lr * AFFINE_HEAD_LR}, {"params": rest, "lr": lr}]


def _losses(config: WarpConfig):
    from monai.losses import BendingEnergyLoss, DiceCELoss, LocalNormalizedCrossCorrelationLoss

    return (LocalNormalizedCrossCorrelationLoss(spatial_dims=2, kernel_size=config.ncc_kernel),
            BendingEnergyLoss(), DiceCELoss(softmax=False, include_background=False))


def train_warp(reference: torch.Tensor, reference_mask: torch.Tensor, targets: torch.Tensor, *,
               config: WarpConfig = WarpConfig(), model: WarpModel | None = None,
               pseudo_masks: torch.Tensor | None = None, steps: int | None = None,
               progress: jobs.Progress | None = None, cancel: jobs.Cancel | None = None) -> WarpModel:
    """Train (or retrain) the warping model from the reference onto ``targets``.

    Parameters
    ----------
    reference : tensor (1, s, s)
        :func:`grey_picture` of the reference slice.
    reference_mask : tensor (1 + K, s, s)
        :func:`one_hot` of its objects.
    targets : tensor (T, 1, s, s)
        Grey pictures of the target slices.
    pseudo_masks : tensor (T, 1 + K, s, s), optional
        SAM2's masks of the targets; adds a DiceCE term (retraining).
    """
    gen = torch.Generator().manual_seed(config.seed)
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = WarpModel(config)
    model.train()
    ncc, bending, dice_ce = _losses(config)
    opt = torch.optim.AdamW(_param_groups(model, config.lr))
    ref, ref_mask = reference[None], reference_mask[None]
    steps = config.steps if steps is None else steps
    for step in range(steps):
        jobs.check(cancel, "training the warping model")
        pick = torch.randint(0, targets.shape[0], (min(config.batch, targets.shape[0]),), generator=gen)
        n = pick.numel()
        aug_img, aug_mask = _augment(ref, ref_mask, n, config, gen)
        fixed = torch.cat([targets[pick], aug_img])
        ddf, ddf_local = model(ref.expand(2 * n, -1, -1, -1), fixed)
        moved = model.warp(ref.expand(2 * n, -1, -1, -1), ddf)
        moved_mask = model.warp(ref_mask.expand(2 * n, -1, -1, -1), ddf)
        loss = ncc(moved, fixed) + config.smooth_weight * bending(ddf_local)
        loss = loss + config.aug_weight * dice_ce(moved_mask[n:], aug_mask)
        if pseudo_masks is not None:
            loss = loss + config.pseudo_weight * dice_ce(moved_mask[:n], pseudo_masks[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
        jobs.report(progress, "warping", step + 1, steps)
    return model.eval()


@torch.no_grad()
def warp_labels(model: WarpModel, reference: torch.Tensor, reference_labels: np.ndarray,
                object_ids: Sequence[int], target: torch.Tensor,
                out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """The reference objects warped onto one target of size ``out_hw`` (default: the reference's).

    Returns a (K, H, W) bool array, one plane per object id (a pixel goes to
    the object with the most warped mass, above one half).
    """
    fine = one_hot(reference_labels, object_ids)  # (1 + K, H, W)
    if out_hw is not None and tuple(out_hw) != tuple(fine.shape[1:]):
        fine = F.interpolate(fine[None], size=tuple(out_hw), mode="bilinear", align_corners=False)[0]
    ddf, _ = model(reference[None], target[None])
    h, w = fine.shape[1:]
    s = ddf.shape[-1]
    scale = torch.tensor([h / s, w / s]).view(1, 2, 1, 1)
    ddf_full = F.interpolate(ddf, size=(h, w), mode="bilinear", align_corners=False) * scale
    warped = model.warp(fine[None], ddf_full)[0]
    best = warped.argmax(0)
    return np.stack([((best == k + 1) & (warped[k + 1] > 0.5)).numpy() for k in range(len(object_ids))]) \
        if len(object_ids) else np.zeros((0, h, w), bool)
