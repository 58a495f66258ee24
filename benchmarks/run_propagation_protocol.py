"""The propagation protocol on real video sequences (sparsely labelled frames of surgical videos).

    python benchmarks/run_propagation_protocol.py            # from the repository root

Reads ``../shared/data/more/{cadis_binary,catinstseg_binary}/test/{images,labels}``
(not part of the repository; research-only data).  File names are
``<video>_<frame number>.png``; the frames of one video, in frame-number order,
form one sequence, and frames without a label file are tracked but not scored.
For each sequence it writes ``<out>/<sequence>.json/.csv/.png`` (the
``rpsam2 evaluate`` layout) and prints one JSON line with every sequence's
mDSC / mHD95 for SAM2 and RP-SAM2.

With random SAM2 weights (the default here, no download) the numbers only show
that the pipeline runs.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

warnings.filterwarnings("ignore", category=UserWarning)  # SAM2's CUDA hole filling is absent on a CPU

DATASETS = ("cadis_binary", "catinstseg_binary")


def sequences(root: Path) -> dict[str, tuple[list[Path], dict[int, Path]]]:
    """``name -> (image files in frame order, {index: label file})``."""
    out: dict[str, tuple[list[Path], dict[int, Path]]] = {}
    for dataset in DATASETS:
        images = root / dataset / "test" / "images"
        labels = root / dataset / "test" / "labels"
        groups: dict[str, list[tuple[int, Path]]] = {}
        for f in sorted(images.glob("*.png")):
            video, number = re.match(r"(.*)_(?:frame)?(\d+)$", f.stem).groups()
            groups.setdefault(f"{dataset}:{video}", []).append((int(number), f))
        for name, frames in groups.items():
            files = [f for _, f in sorted(frames)]
            labelled = {i: labels / f.name for i, f in enumerate(files) if (labels / f.name).is_file()}
            out[name] = (files, labelled)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/more")
    parser.add_argument("--out", default="out/propagation_protocol")
    parser.add_argument("--backbone", default="sam2.1_hiera_tiny")
    parser.add_argument("--sam2-weights", default="random")
    parser.add_argument("--shift-block", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clicks", type=int, default=10)
    args = parser.parse_args(argv)

    from napari_rpsam2 import RPSAM2
    from napari_rpsam2.evaluation import report
    from napari_rpsam2.evaluation.propagation_protocol import evaluate_propagation

    root, out = Path(args.data), Path(args.out)
    if not root.is_dir():
        raise SystemExit(f"{root} not found: run from the repository root with the shared data beside it")
    out.mkdir(parents=True, exist_ok=True)
    model = RPSAM2.load(args.backbone, args.sam2_weights, shift_block=args.shift_block, device=args.device)
    summary = {"benchmark": "propagation_protocol", "backbone": args.backbone,
               "sam2_weights": args.sam2_weights, "shift_block": args.shift_block, "clicks": args.clicks,
               "sequences": {}}
    for name, (files, labelled) in sequences(root).items():
        if not labelled:
            continue
        images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        labels = {i: np.asarray(Image.open(p).convert("L")).astype(np.int32) for i, p in labelled.items()}
        start = time.perf_counter()
        result = evaluate_propagation(model, images, labels, clicks=args.clicks, rgb=True,
                                      class_names={1: "instrument"})
        result["run"] = {"frames": [f.name for f in files], "seconds": time.perf_counter() - start}
        stem = out / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        report.write_json(result, stem.with_suffix(".json"))
        report.write_csv(result, stem.with_suffix(".csv"))
        report.write_figure(result, stem.with_suffix(".png"), title=f"{name}: propagation, {args.clicks} seeds")
        summary["sequences"][name] = {
            "frames": len(files), "labelled": len(labelled), "size_hw": list(images.shape[1:3]),
            "seconds": round(result["run"]["seconds"], 1),
            **{m: {"mDSC": result[m]["mDSC"], "mHD95": result[m]["mHD95"]} for m in ("sam2", "rpsam2")}}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
