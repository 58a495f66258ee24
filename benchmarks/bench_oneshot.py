"""Per-target-slice time of PerSAM, P²SAM and Med-PerSAM against their floor.

A method's floor on one target slice is one encoder pass plus the decoder
passes the method makes there (PerSAM 3; P²SAM 1 per candidate, i.e. per
part count × negative count; Med-PerSAM 1 + refinements), plain SAM2 decoder
passes with the same prompts, measured in the same run, interleaved with the
method so machine noise hits both.  The methods run with the papers' parts
switched on (PerSAM's target-guided attention and semantic prompting inside
the decoder, P²SAM's retrieval, Med-PerSAM's semantic prompting), and their
time includes everything else they do (similarity maps, retrieval by EMD,
prompt generation; k-means is not repeated per target).  Med-PerSAM's
warping-model training (with its pseudo-label rounds) is timed once per stack.
The JSON line also records the machine's load average before and after.

Prints one JSON line (the last line of stdout).  Goal:
``per_slice_to_floor_ratio <= 1.5`` for every method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

from napari_rpsam2 import RPSAM2
from napari_rpsam2.model.image_adapter import encoder_picture
from napari_rpsam2.oneshot import WarpConfig, make_method
from napari_rpsam2.oneshot.passes import decode
from napari_rpsam2.sample_data import make_instrument_stack


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _floor(model, image: np.ndarray, decodes: int, points: np.ndarray, labels: np.ndarray) -> float:
    """One encoder pass plus ``decodes`` decoder passes with the given prompts."""
    _sync()
    start = time.perf_counter()
    emb = model.backbone.encode(encoder_picture(image, None, 1.0, None))
    for _ in range(decodes):
        decode(model, emb, points, labels, multimask=True)
    _sync()
    return time.perf_counter() - start


def _method_time(model, method, image: np.ndarray, index: int) -> tuple[float, object]:
    model.cache.clear()  # the target is encoded inside the measured time, as on first sight
    _sync()
    start = time.perf_counter()
    result = method.segment(image, index)
    _sync()
    return time.perf_counter() - start, result


def _decodes(name: str, method) -> int:
    return {"persam": 3, "p2sam": getattr(method, "decoder_passes", 0),
            "medpersam": 1 + getattr(method, "refinements", 0)}[name]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default="sam2.1_hiera_tiny")
    p.add_argument("--slices", type=int, default=3, help="slices of the sample stack (first = reference)")
    p.add_argument("--repeats", type=int, default=1, help="passes over the targets")
    p.add_argument("--warp-steps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5, help="Med-PerSAM pseudo-label rounds (paper: 5)")
    p.add_argument("--negatives", type=int, nargs="+", default=[1], help="P²SAM negative counts (medical rule)")
    args = p.parse_args(argv)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    model = RPSAM2.load(args.backbone, "random", device=args.device, seed=0)
    images, labels = make_instrument_stack(n_slices=max(2, args.slices))
    targets = list(range(1, len(images)))
    options = {"persam": {}, "p2sam": {"negatives": tuple(args.negatives)},
               "medpersam": {"config": WarpConfig(steps=args.warp_steps), "rounds": args.rounds}}
    methods = {name: make_method(name, model, **options[name]) for name in ("persam", "p2sam", "medpersam")}
    train_seconds = None
    for name, method in methods.items():
        method.set_reference(images[0], labels[0], [1])
        if name == "medpersam":
            start = time.perf_counter()
            method.prepare(images, targets)
            train_seconds = time.perf_counter() - start
    times = {n: [] for n in methods}
    floors = {n: [] for n in methods}
    for _ in range(args.repeats):
        for t in targets:
            for name, method in methods.items():  # interleaved: method, then its floor, slice by slice
                seconds, result = _method_time(model, method, images[t], t)
                obj = result.objects[0]
                times[name].append(seconds)
                floors[name].append(_floor(model, images[t], _decodes(name, method), obj.decoded_points,
                                           obj.labels))
    per_method = {}
    for name in methods:
        m, f = statistics.median(times[name]), statistics.median(floors[name])
        per_method[name] = {"per_slice_s": round(m, 4), "floor_s": round(f, 4),
                            "per_slice_to_floor_ratio": round(m / f, 3), "decoder_passes": _decodes(name, methods[name])}
    out = {
        "benchmark": "oneshot", "device": str(model.device), "backbone": model.backbone.name,
        "image_hw": list(np.shape(images[0])[:2]), "targets": len(targets), "repeats": args.repeats,
        "per_slice_to_floor_ratio": {n: per_method[n]["per_slice_to_floor_ratio"] for n in methods},
        "methods": per_method, "goal_ratio": 1.5,
        "warping_training_s_per_stack": round(train_seconds, 2),
        "warping_parameters": methods["medpersam"].warp_model.parameter_count(),
        "warping_steps": args.warp_steps, "warping_rounds": args.rounds, "p2sam_negatives": args.negatives,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_before": None if load_before is None else [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
