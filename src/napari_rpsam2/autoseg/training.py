"""Training the prompt generator: Dice + cross-entropy on annotated stacks, light augmentation.

Under ``torchrun`` the same training runs on several processes (PyTorch DDP):
every process draws the same shuffles and augmentations, takes every
``world``-th slice of each batch, and scales its loss by its share of the
batch, so the averaged gradients are the one-process batch's; validation
counts are summed over the processes.  The process group is passed in
(``distributed``, e.g. :mod:`napari_rpsam2.training.ddp`), so this package
does not depend on the training package.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from .. import jobs
from .generator import GeneratorConfig, PromptGenerator, normalise_stack, resize, slice_input

__all__ = ["GeneratorData", "GeneratorTrainConfig", "GeneratorEpoch", "GeneratorTrainResult",
           "class_ids_from_instances", "train_generator", "dice_per_class", "Distributed"]


class Distributed(Protocol):
    """What generator training needs of a process group (:mod:`napari_rpsam2.training.ddp` has it)."""

    def rank_and_world(self) -> tuple[int, int]: ...

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module: ...

    def all_reduce_sum(self, values: Sequence[float], device: torch.device | str = "cpu") -> list[float]: ...


@dataclass
class GeneratorData:
    """Annotated stacks for the generator.

    Attributes
    ----------
    stacks : list of ndarray
        Each ``(Z, H, W)`` grey or ``(Z, H, W, 3)`` RGB; slices of one stack are neighbours.
    class_maps : list of ndarray
        Each ``(Z, H, W)`` int: 0 background, ``i`` the ``i``-th class (1-based).
    classes : list of str
        Class names.
    rgb : bool
    """

    stacks: list[np.ndarray]
    class_maps: list[np.ndarray]
    classes: list[str]
    rgb: bool

    def __post_init__(self) -> None:
        if not self.stacks or len(self.stacks) != len(self.class_maps):
            raise ValueError("give as many label stacks as image stacks (at least one)")
        for i, (s, c) in enumerate(zip(self.stacks, self.class_maps)):
            if s.shape[:3] != c.shape:
                raise ValueError(f"stack {i}: images {s.shape[:3]} and labels {c.shape} differ in size")
            top = int(c.max(initial=0))
            if top > len(self.classes) or int(c.min(initial=0)) < 0:
                raise ValueError(f"stack {i} has class id {top} but only {len(self.classes)} classes are named; "
                                 "give a class table that names every id")

    @property
    def n_slices(self) -> int:
        """Slices over all stacks."""
        return sum(s.shape[0] for s in self.stacks)


def class_ids_from_instances(labels: np.ndarray, table: Mapping[int, str], classes: Sequence[str]) -> np.ndarray:
    """Instance labels to 1-based class ids through ``table`` (instance id → class name).

    Ids missing from the table are refused with a message naming them.
    """
    labels = np.asarray(labels)
    ids = [int(i) for i in np.unique(labels) if i != 0]
    missing = [i for i in ids if i not in table]
    if missing:
        raise ValueError(f"label ids {missing[:5]} are not in the class table; name their class")
    index = {name: k + 1 for k, name in enumerate(classes)}
    unknown = sorted({table[i] for i in ids} - set(index))
    if unknown:
        raise ValueError(f"class table names {unknown} that are not among the classes {list(classes)}")
    lut = np.zeros(max(ids, default=0) + 1, np.int32)
    for i in ids:
        lut[i] = index[table[i]]
    return lut[labels]


@dataclass
class GeneratorTrainConfig:
    """Optimisation settings (``augment`` flips, quarter turns and intensity jitter)."""

    epochs: int = 60
    batch_size: int = 8
    lr: float = 2e-3
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    device: str = "cpu"


@dataclass
class GeneratorEpoch:
    """One epoch's log line (``val_dice`` in 0–1, NaN without a validation split)."""

    epoch: int
    loss: float
    val_dice: float
    val_dice_per_class: list[float]
    is_best: bool
    seconds: float


@dataclass
class GeneratorTrainResult:
    """The best generator (by validation Dice; the last epoch without a split) and the history."""

    generator: PromptGenerator
    best_epoch: int
    best_val_dice: float
    history: list[GeneratorEpoch] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0


def _tensors(data: GeneratorData, config: GeneratorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """All slices as network inputs ``(N, C, S, S)`` and targets ``(N, 1, S, S)`` (nearest-resized)."""
    s = config.input_size
    xs, ys = [], []
    for stack, cmap in zip(data.stacks, data.class_maps):
        norm = normalise_stack(stack, data.rgb)
        for z in range(stack.shape[0]):
            x = torch.from_numpy(slice_input(norm, z, config.context))[None]
            xs.append(resize(x, (s, s))[0])
            y = torch.from_numpy(np.ascontiguousarray(cmap[z], dtype=np.float32))[None, None]
            ys.append(torch.nn.functional.interpolate(y, size=(s, s), mode="nearest")[0])
    return torch.stack(xs), torch.stack(ys).long()


def _augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips, quarter turns and brightness/contrast per batch."""
    if float(torch.rand((), generator=gen)) < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if float(torch.rand((), generator=gen)) < 0.5:
        x, y = x.flip(-2), y.flip(-2)
    k = int(torch.randint(0, 4, (), generator=gen))
    x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    scale = 1 + 0.2 * (torch.rand((x.shape[0], 1, 1, 1), generator=gen) - 0.5).to(x.device)
    shift = 0.2 * (torch.rand((x.shape[0], 1, 1, 1), generator=gen) - 0.5).to(x.device)
    return x * scale + shift, y


def dice_per_class(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor, n_classes: int) -> list[float]:
    """Pooled Dice (0–1) of each class 1..n over all pixels; NaN where a class is absent from both."""
    pred, truth = torch.as_tensor(pred), torch.as_tensor(truth)
    out = []
    for k in range(1, n_classes + 1):
        p, t = pred == k, truth == k
        denom = int(p.sum()) + int(t.sum())
        out.append(float("nan") if denom == 0 else 2 * int((p & t).sum()) / denom)
    return out


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction)) if n > 1 else 0
    n_val = min(max(n_val, 1 if fraction > 0 and n > 1 else 0), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@torch.no_grad()
def _validation_counts(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int,
                       batch: int) -> list[float]:
    """Per class: overlap, predicted and true pixel counts (summed over processes they give pooled Dice)."""
    net.eval()
    counts = [0.0] * (3 * n_classes)
    for i in range(0, x.shape[0], batch):
        pred, truth = net(x[i:i + batch]).argmax(1), y[i:i + batch, 0]
        for k in range(1, n_classes + 1):
            p, t = pred == k, truth == k
            counts[3 * k - 3] += int((p & t).sum())
            counts[3 * k - 2] += int(p.sum())
            counts[3 * k - 1] += int(t.sum())
    net.train()
    return counts


def _dice_from_counts(counts: Sequence[float]) -> list[float]:
    return [float("nan") if counts[i + 1] + counts[i + 2] == 0 else 2 * counts[i] / (counts[i + 1] + counts[i + 2])
            for i in range(0, len(counts), 3)]


def _train_epoch(net: torch.nn.Module, opt, loss_fn, x: torch.Tensor, y: torch.Tensor, tr: np.ndarray,
                 tc: "GeneratorTrainConfig", gen: torch.Generator, cancel, rank: int, world: int) -> tuple[float, int]:
    """One pass over ``tr``; returns this process's share of the sum of batch losses, and the batch count.

    Each process takes every ``world``-th slice of a batch (after the batch's augmentation, drawn
    alike on every process) and weighs its mean loss by its share, so DDP's gradient average is
    the gradient of the whole batch's mean loss.  A process with no slice in a batch still joins
    the all-reduce, with a zero gradient.
    """
    total, batches = 0.0, 0
    order = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)].to(x.device)
    for i in range(0, len(order), tc.batch_size):
        jobs.check(cancel, "generator training")
        idx = order[i:i + tc.batch_size]
        xb, yb = (_augment(x[idx], y[idx], gen) if tc.augment else (x[idx], y[idx]))
        xb, yb = xb[rank::world], yb[rank::world]
        if len(xb):
            loss = loss_fn(net(xb), yb) * (len(xb) / len(idx))
        else:
            loss = net(torch.zeros_like(x[:1])).sum() * 0.0
        opt.zero_grad(set_to_none=True)
        (loss * world).backward()
        opt.step()
        total, batches = total + float(loss.detach()), batches + 1
    return total, batches


def train_generator(
    data: GeneratorData,
    config: GeneratorConfig,
    train_config: GeneratorTrainConfig = GeneratorTrainConfig(),
    *,
    progress: jobs.Progress | None = None,
    on_epoch: Callable[[GeneratorEpoch], None] | None = None,
    cancel: jobs.Cancel | None = None,
    distributed: Distributed | None = None,
) -> GeneratorTrainResult:
    """Train a generator on ``data`` (Dice + cross-entropy, MONAI ``DiceCELoss``).

    ``config.classes`` and ``channels_per_slice`` are taken from ``data``.
    ``progress(stage, done, total)`` with stages ``"slices"`` and ``"epoch"``;
    ``cancel()`` stops between steps with :class:`napari_rpsam2.jobs.Cancelled`.
    ``distributed``: the process group of a ``torchrun`` job (every process gets the same result).
    """
    from monai.losses import DiceCELoss

    tc = train_config
    rank, world = distributed.rank_and_world() if distributed is not None else (0, 1)
    config.classes, config.channels_per_slice = list(data.classes), 3 if data.rgb else 1
    jobs.report(progress, "slices", 0, data.n_slices)
    x, y = _tensors(data, config)
    jobs.report(progress, "slices", data.n_slices, data.n_slices)
    tr, va = _split(x.shape[0], tc.val_fraction, tc.seed)
    generator = PromptGenerator.create(config, seed=tc.seed).to(tc.device)
    x, y = x.to(tc.device), y.to(tc.device)
    own = generator.network.train()
    net = distributed.wrap(own, torch.device(tc.device)) if world > 1 else own
    opt = torch.optim.AdamW(own.parameters(), lr=tc.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, tc.epochs))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    gen = torch.Generator().manual_seed(tc.seed)
    n_classes, mine = len(config.classes), va[rank::world]

    def reduce(values: list[float]) -> list[float]:
        return distributed.all_reduce_sum(values, tc.device) if world > 1 else values

    best, best_epoch, best_state, history = -math.inf, 0, None, []
    for epoch in range(1, tc.epochs + 1):
        start = time.perf_counter()
        loss_sum, batches = _train_epoch(net, opt, loss_fn, x, y, tr, tc, gen, cancel, rank, world)
        sched.step()
        per_class = [math.nan] * n_classes
        if len(va):
            per_class = _dice_from_counts(reduce(_validation_counts(own, x[mine], y[mine], n_classes,
                                                                    tc.batch_size)))
        present = [d for d in per_class if not math.isnan(d)]
        val = float(np.mean(present)) if present else math.nan
        score = val if not math.isnan(val) else epoch  # without validation: the last epoch
        is_best = score >= best
        if is_best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in own.state_dict().items()}
        log = GeneratorEpoch(epoch, reduce([loss_sum])[0] / max(batches, 1), val, per_class, is_best,
                             time.perf_counter() - start)
        history.append(log)
        if on_epoch is not None:
            on_epoch(log)
        jobs.report(progress, "epoch", epoch, tc.epochs)
    own.load_state_dict(best_state)
    own.eval()
    generator.to("cpu")
    best_val = history[best_epoch - 1].val_dice
    return GeneratorTrainResult(generator, best_epoch, best_val, history, len(tr), len(va))
