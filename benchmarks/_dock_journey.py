"""The dock journey on a long video, for ``bench_long_stack.py`` (run in a fresh process per video).

A headless napari viewer (run under ``xvfb-run -a``) opens the video through
the plugin's reader; the click dock and the Propagate dock are docked; the
click dock's *Load model* builds SAM2.1 tiny with random weights at a 256
input (``NAPARI_RPSAM2_IMAGE_SIZE``); objects are clicked on the canvas and
committed on scattered slices (the click dock's background embedding
unticked first, unless asked: with the encoder stubbed it would fill the
embedding cache up to its budget within seconds); then the Propagate dock's button tracks the
first slice's object forward over ``--propagate-frames`` frames.  The image
encoder is stubbed (a fixed random embedding per frame, of the right shapes);
the memory attention, memory encoder and mask decoder are SAM2's own.  Input
goes through the GUI tests' helpers (``tests/gui_input.py``, ``gui_forms.py``).

Prints one JSON line: peak resident memory added by the journey (sampled every
20 ms against the memory once the viewer exists, before the video is opened),
the memory the target label volume holds (its rows with labels),
per-click seconds, and per-frame seconds of the propagation (from timestamps
taken in the worker as each frame is handed to the dock), in wall-clock time
and in the worker thread's CPU time (which other jobs on a shared machine do
not change).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import zlib
from pathlib import Path

os.environ.setdefault("NAPARI_RPSAM2_IMAGE_SIZE", "256")
os.environ["NAPARI_RPSAM2_CACHE_DIR"] = "off"  # stub embeddings must never reach the user's disk cache

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


class PeakRss:
    """Resident memory sampled in a thread: the peak since :meth:`reset`."""

    def __init__(self) -> None:
        self.proc, self.peak, self._stop = psutil.Process(), 0.0, threading.Event()
        self.reset()
        threading.Thread(target=self._watch, daemon=True).start()

    def now(self) -> float:
        return self.proc.memory_info().rss / 2**20

    def reset(self) -> float:
        self.base = self.peak = self.now()
        return self.base

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def added(self) -> float:
        self.peak = max(self.peak, self.now())
        return self.peak - self.base


def stub_encoder() -> None:
    """``SAM2Backbone.encode`` returns a fixed random embedding per picture (seeded by its content)."""
    import torch

    from napari_rpsam2.model.backbone import SAM2Backbone
    from napari_rpsam2.model.embedding import ImageEmbedding

    def encode(self, rgb: np.ndarray) -> ImageEmbedding:
        e = self.input_size // 16
        g = torch.Generator().manual_seed(zlib.crc32(np.ascontiguousarray(rgb[::16, ::16]).tobytes()))
        image = torch.randn(1, 256, e, e, generator=g)
        high = [torch.randn(1, 32, 4 * e, 4 * e, generator=g), torch.randn(1, 64, 2 * e, 2 * e, generator=g)]
        return ImageEmbedding(image + 0.1, high, tuple(rgb.shape[:2]), image)

    SAM2Backbone.encode = encode


def object_at(t: int, height: int, width: int) -> tuple[float, float]:
    """The centre of the moving rectangle ``make_video`` draws on frame ``t``."""
    return float((t * 3) % (height - 60) + 30), float((t * 5) % (width - 80) + 40)


def label_rows_mib(volume) -> float:
    """Memory the label volume holds: the rows of its slices that hold any label (a fresh volume is all 0
    and takes memory only where it is written; a write spans the rows of its box).  A chunked volume
    (large stacks) holds its compressed chunks."""
    from napari_rpsam2.io.label_volume import is_chunked

    if is_chunked(volume):
        return volume.nbytes_stored() / 2**20
    rows = sum(int(np.asarray(volume[t]).any(axis=1).sum()) for t in range(volume.shape[0]))
    return rows * volume.shape[2] * volume.dtype.itemsize / 2**20


def journey(video: str, clicks: int, propagate_frames: int, background: bool = False) -> dict:
    """Run the journey (see the module); the JSON fields."""
    import napari
    from _gui_script import BOT, click, press, settle, type_into, wait
    from gui_scenes import clicks_layer

    from napari_rpsam2._widgets._workspace import workspace_for
    from napari_rpsam2.app.propagation import PropagationRun

    stub_encoder()
    frame_times: list[float] = []
    frame_cpu: list[float] = []  # the worker thread's CPU time: other jobs on a shared machine do not change it
    original = PropagationRun.propagate

    def timed(self, *args, on_frame=None, **kwargs):  # timestamps in the worker, as each frame is handed on
        def seen(t, plane):
            frame_times.append(time.perf_counter())
            frame_cpu.append(time.thread_time())
            if on_frame is not None:
                on_frame(t, plane)
        return original(self, *args, on_frame=seen, **kwargs)

    PropagationRun.propagate = timed
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    settle(1.0)
    rss = PeakRss()
    start = time.perf_counter()
    (image,) = viewer.open(video, plugin="napari-rpsam2")
    open_seconds = time.perf_counter() - start
    n, height, width = int(image.data.shape[0]), int(image.data.shape[1]), int(image.data.shape[2])
    _, click_dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
    _, prop_dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Propagate through stack")
    if click_dock.precompute_box.isChecked() != background:  # the person unticks background embedding
        from gui_forms import tick
        tick(BOT, click_dock.precompute_box)
    settle()
    viewer.reset_view()
    settle()
    type_into(click_dock.settings.weights, "random")
    press(click_dock.settings.load_button)
    wait(lambda: workspace_for(viewer).model is not None, 600)
    slices = sorted({0, *np.linspace(0, n - 1, clicks).round().astype(int).tolist()})[:clicks]
    stages = {"loaded": rss.now() - rss.base}
    click_seconds = []
    for t in slices:
        viewer.dims.set_current_step(0, t)
        settle(0.1)
        begin = time.perf_counter()
        click(viewer, clicks_layer(viewer), object_at(t, height, width))
        wait(lambda: not click_dock.busy and "mask of" in click_dock.status.text(), 600)
        click_seconds.append(time.perf_counter() - begin)
        press(click_dock.commit_button)
        stages.setdefault("first_commit", rss.now() - rss.base)
    labels = [ly for ly in viewer.layers if ly.__class__.__name__ == "Labels" and "preview" not in ly.name]
    target = labels[0].name
    rss_after_clicks = rss.added()
    viewer.dims.set_current_step(0, 0)
    settle()
    from gui_forms import choose
    choose(BOT, prop_dock.source_picker, target)
    choose(BOT, prop_dock.target_picker, target)
    choose(BOT, prop_dock.options.direction, "forward")
    type_into(prop_dock.options.start, "0")
    type_into(prop_dock.options.stop, str(min(n, propagate_frames) - 1))
    type_into(prop_dock.options.stop_after, "0")
    begin = time.perf_counter()
    press(prop_dock.run_button)
    wait(lambda: not prop_dock.running, 3600)
    propagate_seconds = time.perf_counter() - begin
    status = prop_dock.status.text()
    stages["clicks"] = rss_after_clicks
    stages["propagated"] = rss.now() - rss.base
    print("rss by stage (MiB):", {k: round(v, 1) for k, v in stages.items()}, file=sys.stderr)
    per_frame = np.diff(frame_times)
    k = min(100, len(per_frame) // 2)
    first, last = float(np.mean(per_frame[:k])), float(np.mean(per_frame[-k:]))
    per_frame_cpu = np.diff(frame_cpu)
    first_cpu, last_cpu = float(np.mean(per_frame_cpu[:k])), float(np.mean(per_frame_cpu[-k:]))
    peak = rss.added()
    labels_mib = label_rows_mib(viewer.layers[target].data)
    result = {
        "frames": n, "background_embedding": background, "open_seconds": round(open_seconds, 3), "clicked_slices": len(slices),
        "click_seconds_median": round(float(np.median(click_seconds)), 3),
        "rss_after_clicks_mib": round(rss_after_clicks, 1), "journey_peak_rss_mib": round(peak, 1),
        "label_volume_mib": round(labels_mib, 1),
        "rss_base_mib": round(rss.base, 1),
        "propagated_frames": len(frame_times), "propagate_seconds": round(propagate_seconds, 2),
        "per_frame_seconds_first_100": round(first, 4), "per_frame_seconds_last_100": round(last, 4),
        "per_frame_seconds_median": round(float(np.median(per_frame)), 4),
        "per_frame_seconds_last_100_over_first_100": round(last / first, 3),
        "per_frame_cpu_seconds_first_100": round(first_cpu, 4), "per_frame_cpu_seconds_last_100": round(last_cpu, 4),
        "per_frame_cpu_seconds_last_100_over_first_100": round(last_cpu / first_cpu, 3),
        "propagate_status": status[:90],
    }
    viewer.close()
    return result


if __name__ == "__main__":
    print(json.dumps(journey(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:5] == ["background"])))
