"""Automatic segmentation: stage-2 time per slice against its SAM2 floor; generator and adapter costs.

* ``per_slice_to_floor_ratio``: one slice through ``autosegment`` with two
  refinement stages (generator, components, encoder, two SAM2 calls per
  component, masks and boxes), against the floor: the encoder pass plus the
  same SAM2 decoder calls with the same prompts, nothing else.  Goal ≤ 1.2.
* ``generator_s_per_slice``: the prompt generator's inference on one slice.
* ``adapter_click_ratio``: one click decoded by a copy of SAM2 with every
  adapter hooked on (all places, rank 16, non-zero weights) against plain SAM2
  on the same embedding.  Goal ≤ 1.15.  On a shared machine the pairwise ratios
  scatter widely (their quartiles are printed); the ratio of the two sides'
  fastest clicks is printed too, as the least disturbed estimate.
  ``adapter_encode_ratio`` is the same for the encoder (no goal).

Every pair is timed interleaved (A B, B A, …); medians of the pairwise ratios.
The generator is trained for a few epochs on the sample stack (or given with
``--generator``); SAM2 has random weights.  Prints one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _timing import interleaved, median_ratio  # noqa: E402

from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2.autoseg import (  # noqa: E402
    GeneratorConfig,
    GeneratorData,
    GeneratorTrainConfig,
    load_generator,
    train_generator,
)
from napari_rpsam2.autoseg.refine import RefineOptions  # noqa: E402
from napari_rpsam2.autoseg.run import autosegment  # noqa: E402
from napari_rpsam2.model.adapters import SAM2Adapters  # noqa: E402
from napari_rpsam2.model.backbone import SAM2Backbone  # noqa: E402
from napari_rpsam2.model.coords import pixels_to_normalized  # noqa: E402
from napari_rpsam2.model.image_adapter import encoder_picture  # noqa: E402
from napari_rpsam2.sample_data import make_instrument_stack  # noqa: E402


def _generator(path: str | None, images: np.ndarray, labels: np.ndarray, epochs: int):
    if path:
        return load_generator(path)
    data = GeneratorData([images], [(labels > 0).astype(np.int32)], ["instrument"], rgb=True)
    return train_generator(data, GeneratorConfig(input_size=128), GeneratorTrainConfig(epochs=epochs,
                                                                                      val_fraction=0)).generator


def _stage2_and_floor(model, generator, image: np.ndarray, repeats: int) -> tuple[list, list, int]:
    """Interleaved times of a full stage-2 slice and of its SAM2 floor (same prompts, re-encoded each time)."""
    from napari_rpsam2.autoseg import components
    from napari_rpsam2.autoseg.refine import _sam2_call, refine_component

    options = RefineOptions(stages=2)
    emb = model.embed(image)
    prediction = generator.predict(image, 0)
    calls = [c for comp in components(prediction) for c in
             refine_component(model, emb, comp, prediction, options).calls]
    picture = encoder_picture(image, None, 1.0, None)

    def full() -> None:
        model.cache.clear()
        autosegment(model, generator, image, options=options)

    def floor() -> None:
        e = model.backbone.encode(picture)
        with torch.inference_mode():
            for call in calls:
                _sam2_call(model, e, call.box, None, call.mask_input)

    a, b = interleaved(full, floor, repeats)
    return a, b, len(calls)


def _adapted_copy(backbone: SAM2Backbone) -> SAM2Backbone:
    """A second SAM2 with every adapter hooked on (all places, rank 16), weights moved off zero.

    The adapters stay on for the whole run: switching hooks is not part of a click.  Non-zero
    weights, so that the timing holds for trained adapters whatever shortcut zeros might allow.
    """
    sam2 = copy.deepcopy(backbone.model)
    adapted = SAM2Backbone(sam2, backbone.spec, backbone.weights_signature)
    adapters = SAM2Adapters(sam2)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for p in adapters.parameters():
            p.add_(0.01 * torch.randn_like(p))
    adapted.use_adapters(adapters)
    return adapted


def _stage2_numbers(model, images: np.ndarray, labels: np.ndarray, args) -> dict:
    """Stage 2 against its floor, and the generator's own time."""
    generator = _generator(args.generator, images, labels, args.epochs)
    print("stage 2 against its floor …", file=sys.stderr)
    full, floor, n_calls = _stage2_and_floor(model, generator, images[1], args.repeats)
    gen_times, _ = interleaved(lambda: generator.predict(images[1], 0), lambda: None, max(5, args.repeats))
    return {"sam2_calls_per_slice": n_calls,
            "per_slice_s": round(statistics.median(full), 4), "floor_s": round(statistics.median(floor), 4),
            "per_slice_to_floor_ratio": round(median_ratio(full, floor), 3), "goal_ratio": 1.2,
            "generator_s_per_slice": round(statistics.median(gen_times), 4),
            "generator_parameters": generator.parameter_count(), "generator_input": generator.config.input_size}


def _quartiles(a: list[float], b: list[float]) -> list[float]:
    """First and third quartiles of the pairwise ratios (how noisy the median is)."""
    q = statistics.quantiles([x / y for x, y in zip(a, b)], n=4)
    return [round(q[0], 3), round(q[2], 3)]


def _adapter_numbers(model, image: np.ndarray, args) -> dict:
    """A click and an encoder pass with every adapter hooked on, against plain SAM2."""
    emb = model.embed(image)
    xy = torch.as_tensor(pixels_to_normalized(np.array([[128.0, 160.0]]), emb.image_hw), dtype=torch.float32)
    adapted = _adapted_copy(model.backbone)
    picture = encoder_picture(image, None, 1.0, None)
    labels_1 = torch.ones((1, 1), dtype=torch.int, device=model.device)

    def click(backbone):
        def run() -> None:
            with torch.inference_mode():
                backbone.decode(emb, xy[None].to(model.device), labels_1, True)
        return run

    click_a, click_p = interleaved(click(adapted), click(model.backbone), args.clicks)
    enc_a, enc_p = (interleaved(lambda: adapted.encode(picture), lambda: model.backbone.encode(picture),
                                args.encode_pairs) if args.encode_pairs else ([], []))
    adapters = adapted.adapters
    return {"adapter_click_ratio": round(median_ratio(click_a, click_p), 3), "goal_adapter_click_ratio": 1.15,
            "adapter_click_ratio_quartiles": _quartiles(click_a, click_p), "click_pairs": len(click_a),
            "adapter_click_ratio_of_minima": round(min(click_a) / min(click_p), 3),
            "click_s": round(statistics.median(click_p), 5),
            "click_with_adapters_s": round(statistics.median(click_a), 5),
            "adapter_encode_ratio": round(median_ratio(enc_a, enc_p), 3) if enc_a else None,
            "adapter_parameters": adapters.parameter_count(),
            "adapter_share": round(adapters.parameter_count() / model.backbone.parameter_count(), 5)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default="sam2.1_hiera_tiny")
    p.add_argument("--repeats", type=int, default=4, help="interleaved pairs per measurement")
    p.add_argument("--clicks", type=int, default=20, help="click pairs for the adapter ratio")
    p.add_argument("--generator", default=None, help="a generator file (default: trained here on the sample)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--encode-pairs", type=int, default=2, help="pairs for adapter_encode_ratio (0: skip)")
    p.add_argument("--adapters-only", action="store_true", help="only the adapter ratios (no generator, no stage 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = RPSAM2.load(args.backbone, "random", device=args.device, seed=0)
    images, labels = make_instrument_stack(n_slices=2)
    out = {"benchmark": "autoseg", "device": str(model.device), "backbone": model.backbone.name,
           "image_hw": list(images.shape[1:3])}
    if not args.adapters_only:
        out.update(_stage2_numbers(model, images, labels, args))
    print("adapters …", file=sys.stderr)
    out.update(_adapter_numbers(model, images[1], args))
    out.update({"repeats": args.repeats, "torch_threads": torch.get_num_threads(),
                "python": platform.python_version(),
                "conditions": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end"})
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
