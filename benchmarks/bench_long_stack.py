"""Opening a long video through the plugin's reader: time, memory and random-frame access.

Generates a video (default 2,000 frames of 640×480, H.264 through PyAV) in a
temporary folder, opens it with the plugin's napari reader
(``napari_rpsam2._napari_io.read_path``, or in a headless viewer with
``--viewer``) and reads frames from it.  Prints one JSON line (the last line
of stdout):

* ``import_seconds``: importing the reader module (once per session; torch is not loaded);
* ``open_seconds``: the reader call (or ``viewer.open``), which indexes the
  packets and decodes nothing;
* ``open_rss_mib``: resident memory added by opening, against
  ``decoded_video_mib``, what the whole video would take decoded;
* ``random_frame_ms`` (median and max over ``--reads`` random frames, each a
  keyframe seek and a decode forward) and ``next_frame_ms`` (reading on);
* ``rss_after_reads_mib``: memory added after all reads (a few cached frames).

The dock journey (``benchmarks/_dock_journey.py``; needs a display: run
``xvfb-run -a python benchmarks/bench_long_stack.py``): the same video and a
``--short-frames`` one (200) each opened in a fresh process's viewer, the click
and Propagate docks docked, a random-weight SAM2.1 tiny loaded at a 256 input
with the image encoder stubbed, objects clicked on ``--clicks`` scattered
slices (background embedding off unless ``--background``), a
``--propagate-frames`` propagation (all frames of a shorter video) from the Propagate dock.  Adds
``journey`` (both runs' numbers), ``rss_growth_2000_over_200`` (peak memory
added by the journey, long video over short) and
``rss_growth_beyond_labels_2000_over_200`` (the same, less the memory each
run's target label volume holds: the rows of its slices that hold labels) and
``per_frame_seconds_last_100_over_first_100`` (the long run's propagation;
``per_frame_cpu_seconds_last_100_over_first_100`` the same in the worker
thread's CPU time, which other jobs on a shared machine do not change).
``--no-journey`` skips it.

Timings are noisy on a shared machine.  ``--video PATH`` opens an existing
video instead of generating one.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil


def make_video(path: Path, frames: int, width: int, height: int, gop: int) -> float:
    """Encode a synthetic video (moving shapes on a gradient); returns the seconds it took."""
    import av

    start = time.perf_counter()
    yy, xx = np.mgrid[:height, :width]
    base = np.stack([(xx * 255 // width), (yy * 255 // height), np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("h264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "ultrafast", "bf": "2"}
        for i in range(frames):
            frame = base.copy()
            r, c = (i * 3) % (height - 60), (i * 5) % (width - 80)
            frame[r:r + 60, c:c + 80] = (255, 255 - i % 256, i % 256)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return time.perf_counter() - start


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _open(path: Path, viewer):
    if viewer is not None:
        (layer,) = viewer.open(str(path), plugin="napari-rpsam2")
        return layer.data
    from napari_rpsam2._napari_io import read_path

    ((data, _, _),) = read_path(str(path))
    return data


def measure(path: Path, reads: int, viewer: bool, seed: int) -> dict:
    """Open ``path`` through the plugin's reader and read frames; the JSON fields (see the module)."""
    import dask

    start = time.perf_counter()
    import napari_rpsam2._napari_io  # noqa: F401  (the reader's modules: av, dask, nibabel, …)

    import_seconds = time.perf_counter() - start
    v = None
    if viewer:  # the viewer (napari, Qt, OpenGL) is made before measuring: it is not the reader's cost
        import napari

        v = napari.Viewer(show=False)
    before = _rss_mib()
    start = time.perf_counter()
    data = _open(path, v)
    open_seconds = time.perf_counter() - start
    opened = _rss_mib()
    n = int(data.shape[0])
    rng = np.random.default_rng(seed)
    random_ms, next_ms = [], []
    with dask.config.set(scheduler="synchronous"):
        for i in rng.integers(0, n, size=reads).tolist():
            t = time.perf_counter()
            np.asarray(data[i])
            random_ms.append(1000 * (time.perf_counter() - t))
            if i + 1 < n:
                t = time.perf_counter()
                np.asarray(data[i + 1])
                next_ms.append(1000 * (time.perf_counter() - t))
    after = _rss_mib()
    if v is not None:
        v.close()
    return {"frames": n, "frame_shape": list(data.shape[1:]), "import_seconds": round(import_seconds, 2),
            "open_seconds": round(open_seconds, 3),
            "open_rss_mib": round(opened - before, 1),
            "decoded_video_mib": round(float(np.prod(data.shape)) / 2**20, 1),
            "random_frame_ms": {"median": round(statistics.median(random_ms), 1), "max": round(max(random_ms), 1)},
            "next_frame_ms": round(statistics.median(next_ms), 1) if next_ms else None,
            "rss_after_reads_mib": round(after - before, 1), "reads": reads, "viewer": viewer}


def run_journey(video: Path, clicks: int, propagate_frames: int, background: bool) -> dict:
    """The dock journey on ``video`` in a fresh Python process (its JSON line)."""
    script = Path(__file__).with_name("_dock_journey.py")
    done = subprocess.run([sys.executable, str(script), str(video), str(clicks), str(propagate_frames),
                           *(["background"] if background else [])],
                          check=False, capture_output=True, text=True, timeout=7200)
    if done.returncode:
        raise RuntimeError(f"the journey on {video.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def journeys(long_video: Path, tmp: Path, args: argparse.Namespace) -> dict:
    """The journey on the long video and on a ``--short-frames`` one; the ratios the issue asks for."""
    short = tmp / "short.mp4"
    make_video(short, args.short_frames, args.width, args.height, args.gop)
    runs = {}
    for name, path in (("short", short), ("long", long_video)):
        runs[name] = run_journey(path, args.clicks, args.propagate_frames, args.background)
        print(f"journey on {runs[name]['frames']} frames: {runs[name]}", file=sys.stderr)
    long, short = runs["long"], runs["short"]
    growth = long["journey_peak_rss_mib"] / short["journey_peak_rss_mib"]
    beyond = ((long["journey_peak_rss_mib"] - long["label_volume_mib"])
              / (short["journey_peak_rss_mib"] - short["label_volume_mib"]))
    return {"journey": runs,
            "rss_growth_2000_over_200": round(growth, 3),
            "rss_growth_beyond_labels_2000_over_200": round(beyond, 3),
            "per_frame_seconds_last_100_over_first_100": runs["long"]["per_frame_seconds_last_100_over_first_100"],
            "per_frame_cpu_seconds_last_100_over_first_100":
                runs["long"]["per_frame_cpu_seconds_last_100_over_first_100"],
            "journey_model": "SAM2.1 hiera-tiny, random weights, 256 input (NAPARI_RPSAM2_IMAGE_SIZE), "
                             "image encoder stubbed (fixed random embedding per frame)"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--gop", type=int, default=60, help="frames between keyframes of the generated video")
    p.add_argument("--reads", type=int, default=30, help="random frames read after opening")
    p.add_argument("--video", default=None, help="open this video instead of generating one")
    p.add_argument("--viewer", action="store_true", help="open in a headless napari viewer (viewer.open)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-journey", action="store_true", help="skip the dock journey (needs a display)")
    p.add_argument("--short-frames", type=int, default=200, help="frames of the journey's short video")
    p.add_argument("--clicks", type=int, default=20, help="slices clicked in the journey")
    p.add_argument("--background", action="store_true",
                   help="leave the click dock's background embedding on (it fills the cache to its budget)")
    p.add_argument("--propagate-frames", type=int, default=500, help="frames propagated in the journey")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        encode_seconds = None
        path = Path(args.video) if args.video else Path(tmp) / "long.mp4"
        if args.video is None:
            encode_seconds = round(make_video(path, args.frames, args.width, args.height, args.gop), 1)
            print(f"generated {path.name}: {args.frames} frames in {encode_seconds} s", file=sys.stderr)
        result = measure(path, args.reads, args.viewer, args.seed)
        result.update({"video_mib": round(path.stat().st_size / 2**20, 1), "encode_seconds": encode_seconds,
                       "gop": args.gop if args.video is None else None, "python": platform.python_version(),
                       "machine": platform.machine(), "note": "timings are noisy on a shared machine"})
        if not args.no_journey:
            result.update(journeys(path, Path(tmp), args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
