"""``rpsam2 autoseg train | run | evaluate``: automatic segmentation from a learned prompt generator."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .support import (
    UsageError,
    annotated_folders,
    existing_file,
    existing_folder,
    make_model,
    model_options,
    output_file,
    run_job,
)

__all__ = ["add_parser"]


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")


def _features(text: str) -> tuple[int, ...]:
    try:
        feats = tuple(int(v) for v in text.split(","))
    except ValueError:
        feats = ()
    if len(feats) != 6 or min(feats) < 1:
        raise UsageError(f"--features must be six positive whole numbers separated by commas, got {text!r}")
    return feats


def cmd_train(args: argparse.Namespace, base=None) -> int:
    from ..app.autoseg import train_generator_from_folders
    from ..autoseg import GeneratorConfig, GeneratorTrainConfig

    out = output_file(args.out, ".safetensors")
    images, labels = annotated_folders(args)
    _positive(args, "epochs", "batch_size")
    if args.input_size < 16 or args.input_size % 16:
        raise UsageError("--input-size must be a multiple of 16")
    if not args.lr > 0:
        raise UsageError("--lr must be positive")
    if not 0 <= args.val_fraction < 1:
        raise UsageError("--val-fraction must be at least 0 and below 1")
    config = GeneratorConfig(input_size=args.input_size, features=_features(args.features))
    rank, world, device = 0, 1, _device(args.device)
    if "RANK" in os.environ:  # started by torchrun: join its process group (DDP)
        from ..training import ddp

        rank, world, device = ddp.init_from_env(args.device)
    quiet = args.quiet or rank != 0
    tc = GeneratorTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              val_fraction=args.val_fraction, seed=args.seed, augment=not args.no_augment,
                              device=device)
    try:
        result = run_job(lambda progress, cancel: train_generator_from_folders(
            images, labels, out, class_map=args.class_map, config=config, train_config=tc, progress=progress,
            on_epoch=None if quiet else _print_epoch, cancel=cancel), quiet=quiet, stage="epoch",
            what="generator training")
    finally:
        if world > 1:
            ddp.leave_group()
    if rank != 0:
        return 0
    dice = "" if result.n_val == 0 else f", validation Dice {100 * result.best_val_dice:.1f}%"
    procs = f" on {world} processes" if world > 1 else ""
    print(f"wrote {out} (classes {', '.join(result.generator.classes)}; best epoch {result.best_epoch}{dice}{procs})")
    return 0


def _device(device: str) -> str:
    from ..model.backbone import pick_device

    return str(pick_device(device))


def _print_epoch(log) -> None:
    from tqdm.auto import tqdm

    val = "" if log.val_dice != log.val_dice else f"  val Dice {100 * log.val_dice:.1f}%"
    tqdm.write(f"epoch {log.epoch}: loss {log.loss:.4f}{val}{'  *best' if log.is_best else ''}  [{log.seconds:.1f}s]")


def _options(args: argparse.Namespace):
    from ..autoseg.refine import RefineOptions

    _positive(args, "min_area")
    return RefineOptions(stages=args.stages, mask_prompt=not args.no_mask_prompt, clicks=args.clicks,
                         min_area=args.min_area, follow=getattr(args, "follow", False))


def _tracking(args: argparse.Namespace, images):
    """``--follow``'s settings (refused without ``--follow``); its images must be one stack's frames."""
    from ..app.autoseg import check_stack_files, image_files
    from ..autoseg.follow import FollowOptions

    given = [f"--{n.replace('_', '-')}" for n in ("stop_after", "direction") if getattr(args, n) is not None]
    if not args.follow:
        if given:
            raise UsageError(f"{given[0]} sets how objects are followed; add --follow")
        return FollowOptions()
    if args.stop_after is not None and args.stop_after < 0:
        raise UsageError("--stop-after must be 0 (never stop) or more slices")
    check_stack_files(image_files(images))
    stop_after = 2 if args.stop_after is None else (args.stop_after or None)
    return FollowOptions(direction=args.direction or "both", stop_after=stop_after)


def _load(args: argparse.Namespace, base):
    from ..autoseg import load_generator

    generator = load_generator(existing_file(args.generator, "prompt generator"))
    if args.shift_block is not None:
        existing_file(args.shift_block, "shift-block checkpoint")
    model = make_model(args, base) if args.stages > 0 or args.follow else None
    return generator, model


def cmd_run(args: argparse.Namespace, base=None) -> int:
    from ..app.autoseg import image_files, run_folder

    images = existing_folder(args.images, "images")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the label files")
    if not out.parent.is_dir():
        raise UsageError(f"the folder {out.parent} for --out does not exist; create it first")
    options = _options(args)
    image_files(images)  # no images: say so before loading anything
    tracking = _tracking(args, images)
    generator, model = _load(args, base)
    done = run_job(lambda progress, cancel: run_folder(model, generator, images, out, options, tracking=tracking,
                                                       progress=progress, cancel=cancel),
                   quiet=args.quiet, stage="images", what="automatic segmentation")
    n = sum(len(r.objects) for r in done.results)
    how = " followed through the stack" if args.follow else ""
    print(f"wrote {len(done.files)} label files with {n} objects{how} to {out} (class maps in {out / 'classes'})")
    return 0


def cmd_evaluate(args: argparse.Namespace, base=None) -> int:
    from ..app.autoseg import evaluate_folder
    from ..evaluation.report import write_json

    images, labels = annotated_folders(args)
    out = output_file(args.out, ".json")
    if any(s not in (0, 1, 2) for s in args.stages):
        raise UsageError("--stages takes 0, 1 and/or 2")
    tracking = _tracking(args, images)
    widest = argparse.Namespace(**{**vars(args), "stages": max(args.stages), "follow": False})
    options = _options(widest)
    generator, model = _load(argparse.Namespace(**{**vars(widest), "follow": args.follow}), base)
    report = run_job(lambda progress, cancel: evaluate_folder(
        model, generator, images, labels, class_map=args.class_map, stages=args.stages, options=options,
        follow=args.follow, tracking=tracking, progress=progress, cancel=cancel),
        quiet=args.quiet, stage="stages", what="evaluation")
    report["sam2"] = None if model is None else model.backbone.weights_signature
    write_json(report, out)
    _write_csv(report, out.with_suffix(".csv"))
    for stage, entry in report["stages"].items():
        mean = entry["mean_dice"]
        print(f"stages {stage}: mean Dice {'n/a' if mean is None else f'{mean:.2f}%'}")
    print(f"wrote {out} and {out.with_suffix('.csv')}")
    return 0


def _write_csv(report: dict, path: Path) -> None:
    from ..app.autoseg import _write_csv as write_rows

    rows = [(stage, name, v["dice"], v["hd95"], v["images"]) for stage, entry in report["stages"].items()
            for name, v in entry["per_class"].items()]
    write_rows(path, ("stages", "class", "dice_percent", "hd95_px", "images"), rows)


def _refine_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--generator", required=True, help="prompt generator (.safetensors from 'autoseg train')")
    sp.add_argument("--min-area", type=int, default=16, help="drop generator regions under this many pixels")
    sp.add_argument("--clicks", action="store_true", help="add a positive click at each region's most interior "
                    "pixel (moved by --shift-block when given)")
    sp.add_argument("--no-mask-prompt", action="store_true", help="give SAM2 boxes only, not the logits")
    sp.add_argument("--shift-block", default=None, help="shift-block checkpoint for --clicks")
    sp.add_argument("--follow", action="store_true", help="the images are the frames of one stack: refine each "
                    "object on the slice where the generator is most confident and follow it through the stack "
                    "with SAM2's memory")
    sp.add_argument("--stop-after", type=int, default=None, help="with --follow: drop an object unseen for this "
                    "many slices in a row (default 2; 0: never)")
    sp.add_argument("--direction", choices=("forward", "backward", "both"), default=None,
                    help="with --follow: from the key slice on (default both)")


def add_parser(sub) -> None:
    """Register ``autoseg`` (train, run, evaluate) on the ``rpsam2`` subcommand parsers."""
    from .support import Parser

    group = sub.add_parser("autoseg", help="automatic segmentation: a learned prompt generator, refined by SAM2")
    cmds = group.add_subparsers(dest="autoseg_command", required=True, parser_class=Parser)
    tr = cmds.add_parser("train", help="train a prompt generator on annotated images")
    tr.add_argument("--images", required=True, help="folder of images")
    tr.add_argument("--labels", required=True, help="folder of label images with the same file names")
    tr.add_argument("--class-map", default=None, help="JSON {\"label id\": \"class name\"} (several ids may "
                    "share a class); default: each id is a class")
    tr.add_argument("--out", required=True, help="generator file to write (.safetensors)")
    tr.add_argument("--epochs", type=int, default=60)
    tr.add_argument("--batch-size", type=int, default=8)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--val-fraction", type=float, default=0.2, help="share of the images held out (0: none)")
    tr.add_argument("--input-size", type=int, default=128, help="side the images are resized to (multiple of 16)")
    tr.add_argument("--features", default="16,16,32,64,128,16", help="U-Net widths, six numbers")
    tr.add_argument("--no-augment", action="store_true", help="no flips, turns or intensity jitter")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, …")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=cmd_train)
    run = cmds.add_parser("run", help="segment every image of a folder automatically")
    model_options(run)
    run.add_argument("--images", required=True, help="folder of images")
    run.add_argument("--out", required=True, help="folder for the instance labels (class maps in <out>/classes)")
    run.add_argument("--stages", type=int, choices=(0, 1, 2), default=2,
                     help="SAM2 refinements (0: the generator's own masks)")
    _refine_args(run)
    run.set_defaults(func=cmd_run)
    ev = cmds.add_parser("evaluate", help="Dice and HD95 per class for 0, 1 and 2 refinement stages")
    model_options(ev)
    ev.add_argument("--images", required=True)
    ev.add_argument("--labels", required=True)
    ev.add_argument("--class-map", default=None, help="JSON {\"label id\": \"class name\"}")
    ev.add_argument("--out", required=True, help="report (.json; a .csv is written beside it)")
    ev.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2],
                    help="rows to measure (--follow adds a row '<most stages> + follow')")
    _refine_args(ev)
    ev.set_defaults(func=cmd_evaluate)
