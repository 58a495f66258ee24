"""Training at scale: peak memory against the number of slices, and the preparation split over processes.

Prints one JSON line last:

* ``peak_rss_growth_400_over_50`` (goal ≤ 1.2): peak resident memory of a
  training run on 400 slices over the same run on 50, each in a fresh
  subprocess.  The encoder is stubbed (random embeddings of SAM2's shapes,
  so 400 real encodes do not dominate the run); the mask decoder, the
  candidate stage and the shift block are real.
* ``step_to_limit_ratio`` (goal ≤ 1.5): one streamed training step (its
  batch read from the disk store, then forward and backward) over the
  decoder's forward + backward alone for the same clicks (as in
  ``bench_train.py``).
* ``embed_and_candidates_speedup_2_ranks`` (goal ≥ 1.6): the preparation
  (real random-weight encoder + candidates) of the same slices under
  ``torchrun --nproc_per_node 1`` and ``2`` (gloo, one thread each), with the
  encoder runs each process made.

Numbers on a shared machine are noisy; say so when you quote them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _stack(n: int, hw=(96, 128), seed: int = 0):
    """``n`` small RGB frames with one disc each (the encoder is stubbed: size does not matter to it)."""
    from napari_rpsam2.training.data import stack_from_arrays

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, *hw, 3), dtype=np.uint8)
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    labels = np.zeros((n, *hw), np.int32)
    for i in range(n):
        cy, cx = rng.integers(30, hw[0] - 30), rng.integers(30, hw[1] - 30)
        labels[i][(yy - cy) ** 2 + (xx - cx) ** 2 < 20 ** 2] = 1
    return stack_from_arrays(images, labels)


def _stub_encoder(model) -> list:
    """Random embeddings of the backbone's real shapes instead of the encoder; returns the call log."""
    from napari_rpsam2.model.embedding import ImageEmbedding

    real = model.backbone.encode(np.zeros((64, 64, 3), np.float32))
    shapes = {k: tuple(v.shape) for k, v in real.tensors().items()}
    calls: list = []
    gen = torch.Generator().manual_seed(0)

    def encode(rgb):
        calls.append(1)
        tensors = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
        return ImageEmbedding.from_tensors(tensors, tuple(rgb.shape[:2]))

    model.backbone.encode = encode
    return calls


def child_memory(n: int) -> dict:
    """One training epoch on ``n`` slices (stubbed encoder); peak RSS and the step ratio."""
    from napari_rpsam2 import RPSAM2
    from napari_rpsam2.training.trainer import TrainConfig, train_shift_block

    torch.set_num_threads(1)
    model = RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0)
    calls = _stub_encoder(model)
    stack = _stack(n)
    config = TrainConfig(epochs=1, batch_size=8, clicks_per_object=1, grid_stride=40)  # memory, not speed
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        result = train_shift_block(model, stack, Path(tmp) / "block.safetensors", config,
                                   store_dir=Path(tmp) / "store")
        seconds = time.perf_counter() - began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out = {"slices": n, "encodes": len(calls), "peak_rss_mib": round(peak / 2**20, 1),
               "train_s": round(seconds, 2), "epochs": len(result.history)}
    return out


def child_step() -> dict:
    """The streamed step against the decoder limit (its own process: it does not touch the memory runs)."""
    sys.path.insert(0, str(HERE))
    from _timing import interleaved

    from napari_rpsam2 import RPSAM2
    from napari_rpsam2.model.coords import pixels_to_normalized
    from napari_rpsam2.training.trainer import training_step

    torch.set_num_threads(1)
    model = RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0)
    _stub_encoder(model)
    with tempfile.TemporaryDirectory() as tmp:
        return _step_ratio(model, _stack(2), Path(tmp), interleaved, pixels_to_normalized, training_step)


def _step_ratio(model, stack, store_dir, interleaved, pixels_to_normalized, training_step) -> dict:
    from napari_rpsam2.training.prepare import Preparer, training_indices
    from napari_rpsam2.training.slice_store import SliceStore
    from napari_rpsam2.training.trainer import TrainConfig

    config = TrainConfig(batch_size=2, clicks_per_object=10, grid_stride=20)  # paper: 10 clicks
    prep = Preparer(model, stack, config, SliceStore(store_dir))
    refs = [prep.ref(i) for i in training_indices(stack)[:2]]
    prep.prepare(refs)
    rng = np.random.default_rng(0)
    model.shift_block.train()
    k = config.clicks_per_object

    def one_step() -> None:
        model.shift_block.zero_grad(set_to_none=True)
        training_step(model, [prep.load(r) for r in refs], config, rng)

    slices = [prep.load(r) for r in refs]

    def decoder_limit() -> None:
        for item in slices:
            rows = np.concatenate([o.inside[rng.integers(len(o.inside), size=k)] for o in item.objects])
            xy = torch.as_tensor(pixels_to_normalized(rows, item.embedding.image_hw),
                                 dtype=torch.float32).requires_grad_(True)
            chunk = model.backbone.click_chunk_size
            for s in range(0, len(xy), chunk):
                ones = torch.ones((len(xy[s:s + chunk]), 1), dtype=torch.int)
                logits, _ = model.backbone.decode(item.embedding, xy[s:s + chunk].unsqueeze(1), ones, True)
                logits.sigmoid().mean().backward()

    one_step()
    steps, limits = interleaved(one_step, decoder_limit, repeats=4)
    step, limit = statistics.median(steps), statistics.median(limits)
    return {"step_s": round(step, 3), "decoder_limit_s": round(limit, 3), "step_to_limit_ratio": round(step / limit, 3)}


def child_prepare(n: int) -> None:
    """Under torchrun: time this process's share of the preparation (real random-weight encoder)."""
    import torch.distributed as dist

    from napari_rpsam2 import RPSAM2
    from napari_rpsam2.training import ddp
    from napari_rpsam2.training.prepare import Preparer, prep_shard, training_indices
    from napari_rpsam2.training.slice_store import SliceStore
    from napari_rpsam2.training.trainer import TrainConfig

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = ddp.rank_and_world()
    model = RPSAM2.load("sam2.1_hiera_tiny", "random", device="cpu", seed=0)
    stack = _stack(n, hw=(192, 256))
    folder = ddp.broadcast_object(tempfile.mkdtemp(prefix="bench-prep-") if rank == 0 else None)
    prep = Preparer(model, stack, TrainConfig(grid_stride=24), SliceStore(folder))
    refs = [prep.ref(i) for i in training_indices(stack)]
    ddp.barrier()
    began = time.perf_counter()
    prep.prepare(prep_shard(refs, rank, world))
    ddp.barrier()
    seconds = time.perf_counter() - began
    counts: list = [None] * world
    dist.all_gather_object(counts, prep.counts["encoded"])
    if rank == 0:
        print(json.dumps({"world": world, "prepare_s": round(seconds, 2), "encoded_per_process": counts}))
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    dist.destroy_process_group()


def _run(cmd: list[str], timeout: int = 3000) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child-memory", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-prepare", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-step", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--slices", type=int, nargs=2, default=(50, 400), help="small and large training sets")
    parser.add_argument("--prepare-slices", type=int, default=8, help="slices for the 1- vs 2-process preparation")
    parser.add_argument("--skip-ddp", action="store_true")
    parser.add_argument("--skip-memory", action="store_true", help="only the 1- vs 2-process preparation")
    args = parser.parse_args(argv)
    if args.child_memory is not None:
        print(json.dumps(child_memory(args.child_memory)))
        return
    if args.child_step:
        print(json.dumps(child_step()))
        return
    if args.child_prepare is not None:
        child_prepare(args.child_prepare)
        return
    me = [sys.executable, str(Path(__file__).resolve())]
    result: dict = {"device": "cpu", "backbone": "sam2.1_hiera_tiny"}
    if not args.skip_memory:
        small, large = (_run([*me, "--child-memory", str(n)]) for n in args.slices)
        step = _run([*me, "--child-step"])
        result.update({"small": small, "large": large, "step": step,
                       "peak_rss_growth_400_over_50": round(large["peak_rss_mib"] / small["peak_rss_mib"], 3),
                       "step_to_limit_ratio": step["step_to_limit_ratio"]})
    if not args.skip_ddp:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        runs = {w: _run([torchrun, "--nproc_per_node", str(w), "--master_port", str(29600 + w), *me[1:],
                         "--child-prepare", str(args.prepare_slices)]) for w in (1, 2)}
        result.update({"prepare_1_rank": runs[1], "prepare_2_ranks": runs[2],
                       "embed_and_candidates_speedup_2_ranks": round(runs[1]["prepare_s"] / runs[2]["prepare_s"], 3),
                       "cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
