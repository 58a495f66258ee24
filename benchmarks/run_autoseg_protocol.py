"""RFMedSAM 2's staged comparison on annotated image folders: generator alone, + stage 1, + stage 2,
each with and without SAM2 adapters; Dice (%) and HD95 (px) per class and the class average.

    python benchmarks/run_autoseg_protocol.py --data ../shared/data/cataract1k --out out/autoseg_protocol

``--data`` holds ``train/``, ``val/`` and ``test/`` with ``images/`` and ``labels/``.
The generator trains on train/ + val/ with a seeded random validation split of
val/'s size (not val/'s own files), the
adapters are fine-tuned on train/, everything is measured on test/.  Writes
``protocol.json``, ``protocol.csv`` and ``protocol.png`` into ``--out``.
With random SAM2 weights (the default here) only the generator's row means
something: random SAM2 refines nothing.  ``--follow`` adds the row "2 + follow"
(test/'s images taken as the frames of one stack, each object followed from
its key slice with SAM2's memory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from napari_rpsam2 import RPSAM2
from napari_rpsam2.app.autoseg import evaluate_folder, train_generator_from_folders
from napari_rpsam2.app.finetune import finetune_from_folders
from napari_rpsam2.autoseg import GeneratorConfig, GeneratorTrainConfig, load_generator
from napari_rpsam2.evaluation.report import write_json
from napari_rpsam2.model.adapters import AdapterConfig
from napari_rpsam2.training.adapters import FinetuneConfig


def _merged_train(data: Path, tmp: Path) -> tuple[Path, Path, int]:
    """train/ and val/ side by side in one folder pair, and how many files val/ has."""
    for sub in ("images", "labels"):
        (tmp / sub).mkdir(parents=True)
        for split in ("train", "val"):
            folder = data / split / sub
            if folder.is_dir():
                for f in folder.iterdir():
                    shutil.copy(f, tmp / sub / f"{split}_{f.name}")
    n_val = len(list((data / "val" / "images").glob("*"))) if (data / "val" / "images").is_dir() else 0
    return tmp / "images", tmp / "labels", n_val


def _figure(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{'adapters' if a else 'plain'} · {s}", v["mean_dice"] or 0.0) for a, runs in
            (("adapters" in k, v) for k, v in report["runs"].items()) for s, v in runs["stages"].items()]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
    ax.set_ylabel("class-average Dice (%)")
    ax.set_title(report["title"], fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="out/autoseg_protocol")
    p.add_argument("--sam2-weights", default="random")
    p.add_argument("--backbone", default="sam2.1_hiera_tiny")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=60, help="generator epochs")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--follow", action="store_true", help="also the row '2 + follow' (test/ is one stack)")
    p.add_argument("--adapter-places", default="decoder", help="comma-separated: encoder,memory,decoder,neck")
    args = p.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        images, labels, n_val = _merged_train(data, Path(tmp))
        n_all = len(list(images.iterdir()))
        start = time.perf_counter()
        result = train_generator_from_folders(images, labels, out / "generator.safetensors",
                                              config=GeneratorConfig(input_size=128),
                                              train_config=GeneratorTrainConfig(epochs=args.epochs,
                                                                                val_fraction=n_val / n_all))
        times["generator_training_s"] = round(time.perf_counter() - start, 1)
    generator = load_generator(out / "generator.safetensors")
    model = RPSAM2.load(args.backbone, args.sam2_weights, device=args.device, seed=0)
    test = (data / "test" / "images", data / "test" / "labels")
    runs = {}
    start = time.perf_counter()
    runs["plain"] = evaluate_folder(model, generator, *test, stages=(0, 1, 2), follow=args.follow)
    times["evaluate_plain_s"] = round(time.perf_counter() - start, 1)
    places = {k: k in args.adapter_places.split(",") for k in ("encoder", "memory", "decoder", "neck")}
    start = time.perf_counter()
    history = finetune_from_folders(model, data / "train" / "images", data / "train" / "labels",
                                    out / "adapters.safetensors", config=FinetuneConfig(epochs=args.finetune_epochs),
                                    adapter_config=AdapterConfig(**places))
    times["finetune_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    runs["adapters"] = evaluate_folder(model, generator, *test, stages=(0, 1, 2), follow=args.follow)
    times["evaluate_adapters_s"] = round(time.perf_counter() - start, 1)
    report = {
        "title": f"{data.name}: generator, +stage 1, +stage 2 (SAM2 {args.sam2_weights})",
        "data": data.name, "sam2_weights": args.sam2_weights, "backbone": args.backbone,
        "generator": {"epochs": args.epochs, "best_epoch": result.best_epoch,
                      "val_dice_percent": 100 * result.best_val_dice, "parameters": generator.parameter_count()},
        "adapters": {"places": places, "epochs": args.finetune_epochs,
                     "loss": [h.loss for h in history],
                     "parameters": model.backbone.adapters.parameter_count()},
        "runs": runs, "seconds": times, "cpus": os.cpu_count(),
    }
    write_json(report, out / "protocol.json")
    with open(out / "protocol.csv", "w", encoding="utf-8") as fh:
        fh.write("adapters,stages,class,dice_percent,hd95_px,images\n")
        for name, run in runs.items():
            for stage, entry in run["stages"].items():
                for cls, v in entry["per_class"].items():
                    fh.write(f"{name == 'adapters'},{stage},{cls},{v['dice']},{v['hd95']},{v['images']}\n")
                fh.write(f"{name == 'adapters'},{stage},class average,{entry['mean_dice']},{entry['mean_hd95']},\n")
    _figure(report, out / "protocol.png")
    print(json.dumps({k: {s: round(v["mean_dice"] or 0, 2) for s, v in r["stages"].items()} for k, r in runs.items()}))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
