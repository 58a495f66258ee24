"""Click latency through the click dock with real canvas events, against the library call.

A napari viewer (under Xvfb when there is no display) gets the sample stack
and the click dock; mouse presses go to the canvas's Qt widget.  Two ratios,
each side interleaved with the other so machine noise hits both:

``widget_to_api_ratio``
    median time from mouse release to the preview layer holding the new mask,
    minus the dock's debounce interval, over the median ``model.segment`` call
    for the same click on the same (cached) slice.  Goal <= 1.5.
``first_click_to_encoder_ratio``
    the same for the first click on a slice never embedded, over the encoder
    alone on a slice of the same size.  Goal <= 1.2.

Prints one JSON line (the last line of stdout).  Absolute times only mean
something on a GPU; random tiny weights are enough for timing.
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


def _display():
    """Start Xvfb when there is no display (returns the virtual display to stop, or None)."""
    if os.environ.get("DISPLAY") or sys.platform in ("darwin", "win32"):
        return None
    from pyvirtualdisplay import Display

    return Display(visible=False, size=(1280, 800)).start()


def _click(viewer, layer, data_rc, QTest, QPoint, Qt) -> float:
    """Press and release at a data point of ``layer`` on the canvas; returns the time of the release."""
    world = layer.data_to_world(np.asarray(data_rc, float))
    x, y = viewer.window._qt_viewer.canvas.view.scene.transform.map([world[-1], world[-2], 0, 1])[:2]
    widget = viewer.window._qt_viewer.canvas.native
    pos = QPoint(int(round(x)), int(round(y)))
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    return time.perf_counter()


def _wait(app, done, timeout=120.0) -> None:
    """Run Qt's event loop until ``done()``: the GUI thread idles (no GIL held) as in real use.

    The times measured come from the layer events themselves, so the 10 ms
    polling interval does not blur them.
    """
    from qtpy.QtCore import QEventLoop, QTimer

    if done():
        return
    loop, timer = QEventLoop(), QTimer()
    end = time.perf_counter() + timeout

    def check() -> None:
        if done() or time.perf_counter() > end:
            loop.quit()

    timer.timeout.connect(check)
    timer.start(10)
    loop.exec()
    timer.stop()
    if not done():
        raise TimeoutError("the dock did not answer in time")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10, help="clicks on the cached slice")
    parser.add_argument("--fresh", type=int, default=3, help="first clicks on slices never embedded")
    args = parser.parse_args(argv)
    display = _display()
    try:
        return _run(args)
    finally:
        if display is not None:
            display.stop()


def _open(n_slices: int):
    import napari

    from napari_rpsam2 import RPSAM2
    from napari_rpsam2._widgets._workspace import workspace_for
    from napari_rpsam2.sample_data import make_instrument_stack

    image, labels = make_instrument_stack(n_slices)
    viewer = napari.Viewer(show=True)
    layer = viewer.add_image(image, name="stack", rgb=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation (RP-SAM2)")
    dock.precompute_box.setChecked(False)  # fresh slices must stay fresh
    viewer.window._qt_window.resize(1280, 800)
    workspace_for(viewer).set_model(RPSAM2.load("sam2.1_hiera_tiny", "random", device="auto", seed=0))
    viewer.reset_view()
    return viewer, layer, dock, labels


def _run(args) -> dict:
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    from napari_rpsam2._widgets.click_widget import DEBOUNCE_MS

    viewer, layer, dock, labels = _open(args.fresh + 1)
    app = QApplication.instance()
    model, debounce = dock.model, DEBOUNCE_MS / 1000
    prompts, preview = dock.layers()["prompts"], dock.layers()["preview"]
    shown: list[float] = []
    preview.events.set_data.connect(lambda *_: shown.append(time.perf_counter()))  # the new slice is on the layer
    calls: list[tuple[float, float]] = []  # (start, end) of each segment call the dock makes
    segment = model.segment

    def timed_segment(*a, **k):
        start = time.perf_counter()
        try:
            return segment(*a, **k)
        finally:
            calls.append((start, time.perf_counter()))

    model.segment = timed_segment  # the dock calls workspace.model.segment: same object
    parts: dict[str, list[float]] = {"before_segment": [], "in_segment": [], "after_segment": []}
    rows, cols = np.nonzero(labels[0] == 1)
    picks = np.random.default_rng(0).integers(0, len(rows), args.repeats + 1)

    def widget_click(index: int, rc) -> float:
        dock.clear()
        _wait(app, lambda: not dock.busy)
        shown.clear()
        calls.clear()
        released = _click(viewer, prompts, [index, *rc], QTest, QPoint, Qt)
        _wait(app, lambda: dock.preview_mask() is not None and shown and not dock.busy)
        (start, end), = calls
        parts["before_segment"].append(start - released - debounce)
        parts["in_segment"].append(end - start)
        parts["after_segment"].append(shown[-1] - end)
        return shown[-1] - released - debounce

    def api_click(index: int, rc) -> float:
        sl = dock.current_slice()
        start = time.perf_counter()
        segment(sl.plane, np.asarray([rc]), [1], True, rgb=sl.rgb, key=sl.key,
                      contrast_limits=layer.contrast_limits, gamma=layer.gamma)
        return time.perf_counter() - start

    widget_click(0, (float(rows[picks[0]]), float(cols[picks[0]])))  # warm-up: embeds slice 0
    widget_t, api_t = [], []
    for values in parts.values():
        values.clear()
    for i in picks[1:]:
        rc = (float(rows[i]), float(cols[i]))
        widget_t.append(widget_click(0, rc))
        api_t.append(api_click(0, rc))
    cached_parts = {f"{k}_ms_median": round(1000 * statistics.median(v), 2) for k, v in parts.items()}
    first_t, encoder_t = [], []
    stack = np.asarray(layer.data)
    for s in range(1, args.fresh + 1):
        viewer.dims.set_current_step(0, s)
        _wait(app, lambda: not dock.busy)
        first_t.append(widget_click(s, (float(rows[picks[0]]), float(cols[picks[0]]))))
        start = time.perf_counter()
        model.embed(np.ascontiguousarray(stack[s][::-1]), rgb=True, contrast_limits=layer.contrast_limits)  # same size, never seen: a real encode
        encoder_t.append(time.perf_counter() - start)
    viewer.close()
    result = {
        "benchmark": "gui_click",
        "widget_ms_median": round(1000 * statistics.median(widget_t), 2),
        "api_ms_median": round(1000 * statistics.median(api_t), 2),
        "widget_to_api_ratio": round(statistics.median(widget_t) / statistics.median(api_t), 3),
        "first_click_ms_median": round(1000 * statistics.median(first_t), 1),
        "encoder_ms_median": round(1000 * statistics.median(encoder_t), 1),
        "first_click_to_encoder_ratio": round(statistics.median(first_t) / statistics.median(encoder_t), 3),
        "cached_click_breakdown": cached_parts,
        "debounce_ms": DEBOUNCE_MS,
        "repeats": args.repeats,
        "fresh_slices": args.fresh,
        "goals": {"widget_to_api_ratio": 1.5, "first_click_to_encoder_ratio": 1.2},
        "device": str(model.device),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
