"""Training the prompt generator: Dice + cross-entropy on annotated stacks, light augmentation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import jobs
from .generator import GeneratorConfig, PromptGenerator, normalise_stack, resize, slice_input

__all__ = ["GeneratorData", "GeneratorTrainConfig", "GeneratorEpoch", "GeneratorTrainResult",
           "class_ids_from_instances", "train_generator", "dice_per_class"]


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
def _validate(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int, batch: int) -> list[float]:
    net.eval()
    preds = torch.cat([net(x[i:i + batch]).argmax(1) for i in range(0, x.shape[0], batch)])
    net.train()
    return dice_per_class(preds, y[:, 0], n_classes)


def train_generator(
    data: GeneratorData,
    config: GeneratorConfig,
    train_config: GeneratorTrainConfig = GeneratorTrainConfig(),
    *,
    progress: jobs.Progress | None = None,
    on_epoch: Callable[[GeneratorEpoch], None] | None = None,
    cancel: jobs.Cancel | None = None,
) -> GeneratorTrainResult:
    """Train a generator on ``data`` (Dice + cross-entropy, MONAI ``DiceCELoss``).

    ``config.classes`` and ``channels_per_slice`` are taken from ``data``.
    ``progress(stage, done, total)`` with stages ``"slices"`` and ``"epoch"``;
    ``cancel()`` stops between steps with :class:`napari_rpsam2.jobs.Cancelled`.
    """
    from monai.losses import DiceCELoss

    tc = train_config
    config.classes, config.channels_per_slice = list(data.classes), 3 if data.rgb else 1
    jobs.report(progress, "slices", 0, data.n_slices)
    x, y = _tensors(data, config)
    jobs.report(progress, "slices", data.n_slices, data.n_slices)
    tr, va = _split(x.shape[0], tc.val_fraction, tc.seed)
    generator = PromptGenerator.create(config, seed=tc.seed).to(tc.device)
    x, y = x.to(tc.device), y.to(tc.device)
    net = generator.network.train()
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, tc.epochs))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    gen = torch.Generator().manual_seed(tc.seed)
    n_classes = len(config.classes)
    best, best_epoch, best_state, history = -math.inf, 0, None, []
    for epoch in range(1, tc.epochs + 1):
        start, losses = time.perf_counter(), []
        order = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)].to(tc.device)
        for i in range(0, len(order), tc.batch_size):
            jobs.check(cancel, "generator training")
            idx = order[i:i + tc.batch_size]
            xb, yb = (_augment(x[idx], y[idx], gen) if tc.augment else (x[idx], y[idx]))
            loss = loss_fn(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        per_class = _validate(net, x[va], y[va], n_classes, tc.batch_size) if len(va) else [math.nan] * n_classes
        present = [d for d in per_class if not math.isnan(d)]
        val = float(np.mean(present)) if present else math.nan
        score = val if not math.isnan(val) else epoch  # without validation: the last epoch
        is_best = score >= best
        if is_best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        log = GeneratorEpoch(epoch, float(np.mean(losses)), val, per_class, is_best, time.perf_counter() - start)
        history.append(log)
        if on_epoch is not None:
            on_epoch(log)
        jobs.report(progress, "epoch", epoch, tc.epochs)
    net.load_state_dict(best_state)
    net.eval()
    generator.to("cpu")
    best_val = history[best_epoch - 1].val_dice
    return GeneratorTrainResult(generator, best_epoch, best_val, history, len(tr), len(va))
