"""``rpsam2 finetune``: SAM2 adapters trained with ground-truth boxes and clicks (SAM2 stays frozen)."""

from __future__ import annotations

import argparse

from .support import (
    UsageError,
    annotated_folders,
    data_options,
    make_model,
    model_options,
    output_file,
    run_job,
)

__all__ = ["add_parser"]


def cmd_finetune(args: argparse.Namespace, base=None) -> int:
    from ..app.finetune import finetune_from_folders
    from ..model.adapters import AdapterConfig
    from ..training.adapters import FinetuneConfig

    out = output_file(args.out, ".safetensors")
    images, labels = annotated_folders(args)
    for name in ("epochs", "clicks", "rank"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    if args.clip_length < 2:
        raise UsageError("--clip-length must be at least 2 (the prompted slice and one tracked after it)")
    if not args.lr > 0:
        raise UsageError("--lr must be positive")
    places = {p: p not in args.no for p in ("encoder", "memory", "decoder", "neck")}
    try:
        adapter_config = AdapterConfig(rank=args.rank, **places)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if not (places["encoder"] or places["decoder"] or places["neck"]) and not args.clips:
        raise UsageError("only memory-attention adapters are left, and they learn on clips: add --clips")
    config = FinetuneConfig(epochs=args.epochs, lr=args.lr, clicks=args.clicks, box_jitter=args.box_jitter,
                            seed=args.seed, clips=args.clips, clip_length=args.clip_length)
    model = make_model(args, base, own_backbone=True)
    history = run_job(lambda progress, cancel: finetune_from_folders(
        model, images, labels, out, class_map=args.class_map, merge_gap=args.merge_gap, config=config,
        adapter_config=adapter_config, progress=progress, on_epoch=None if args.quiet else _print, cancel=cancel),
        quiet=args.quiet, stage="epoch", what="adapter fine-tuning")
    adapters = model.backbone.adapters
    share = 100 * adapters.parameter_count() / model.backbone.parameter_count()
    print(f"wrote {out} ({adapters.parameter_count():,} adapter parameters, {share:.2f} % of SAM2; "
          f"loss {history[0].loss:.4f} → {history[-1].loss:.4f})")
    return 0


def _print(log) -> None:
    from tqdm.auto import tqdm

    clips = "" if log.clip_loss is None else f" (clips {log.clip_loss:.4f})"
    tqdm.write(f"epoch {log.epoch}: loss {log.loss:.4f}{clips}  [{log.seconds:.1f}s]")


def add_parser(sub) -> None:
    """Register ``finetune`` on the ``rpsam2`` subcommand parsers."""
    sp = sub.add_parser("finetune", help="fine-tune SAM2 adapters on annotated images (SAM2 frozen)")
    model_options(sp)
    data_options(sp)
    sp.add_argument("--out", required=True, help="adapter file to write (.safetensors; adapters only)")
    sp.add_argument("--epochs", type=int, default=20)
    sp.add_argument("--lr", type=float, default=1e-3)
    sp.add_argument("--clicks", type=int, default=1, help="positive clicks drawn inside each object per step")
    sp.add_argument("--box-jitter", type=float, default=0.05, help="box corners moved by up to this share of its size")
    sp.add_argument("--rank", type=int, default=16, help="adapter bottleneck width")
    sp.add_argument("--no", nargs="+", default=[], choices=("encoder", "memory", "decoder", "neck"),
                    help="leave out adapters in these places")
    sp.add_argument("--clips", action="store_true",
                    help="also train on clips of consecutive slices through SAM2's memory (how the "
                         "memory-attention adapters learn); the labels must keep one id per object")
    sp.add_argument("--clip-length", type=int, default=3, help="slices per clip: the prompted one and those after it")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_finetune, shift_block=None)
