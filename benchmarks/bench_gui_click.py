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
    _, dock = viewer.window.add_plugin_dock_widget("napari-rpsam2", "Click segmentation")
    dock.precompute_box.setChecked(False)  # fresh slices must stay fresh
    viewer.window._qt_window.resize(1280, 800)
    workspace_for(viewer).set_model(RPSAM2.load("sam2.1_hiera_tiny", "random", device="auto", seed=0))
    viewer.reset_view()
    return viewer, layer, dock, labels


class _Probe:
    """Clicks through the dock and through the library, timing each part."""

    def __init__(self, viewer, layer, dock) -> None:
        from qtpy.QtWidgets import QApplication

        from napari_rpsam2._widgets.click_widget import DEBOUNCE_MS

        self.viewer, self.layer, self.dock = viewer, layer, dock
        self.app, self.debounce = QApplication.instance(), DEBOUNCE_MS / 1000
        self.prompts = dock.layers()["prompts"]
        self.shown: list[float] = []  # set_data of the preview: the new slice is on the layer
        dock.layers()["preview"].events.set_data.connect(lambda *_: self.shown.append(time.perf_counter()))
        self.calls: list[tuple[float, float]] = []  # (start, end) of each segment call the dock makes
        self.model = dock.model
        self.segment = self.model.segment
        self.model.segment = self._timed_segment  # the dock calls workspace.model.segment: same object
        self.parts: dict[str, list[float]] = {"before_segment": [], "in_segment": [], "after_segment": []}

    def _timed_segment(self, *a, **k):
        start = time.perf_counter()
        try:
            return self.segment(*a, **k)
        finally:
            self.calls.append((start, time.perf_counter()))

    def widget_click(self, index: int, rc) -> float:
        from qtpy.QtCore import QPoint, Qt
        from qtpy.QtTest import QTest

        dock = self.dock
        dock.clear()
        _wait(self.app, lambda: not dock.busy)
        self.shown.clear()
        self.calls.clear()
        released = _click(self.viewer, self.prompts, [index, *rc], QTest, QPoint, Qt)
        _wait(self.app, lambda: dock.preview_mask() is not None and self.shown and not dock.busy)
        (start, end), = self.calls
        self.parts["before_segment"].append(start - released - self.debounce)
        self.parts["in_segment"].append(end - start)
        self.parts["after_segment"].append(self.shown[-1] - end)
        return self.shown[-1] - released - self.debounce

    def api_click(self, rc) -> float:
        sl, layer = self.dock.current_slice(), self.layer
        start = time.perf_counter()
        self.segment(sl.plane, np.asarray([rc]), [1], True, rgb=sl.rgb, key=sl.key,
                     contrast_limits=layer.contrast_limits, gamma=layer.gamma)
        return time.perf_counter() - start

    def encoder(self, s: int) -> float:
        plane = np.ascontiguousarray(np.asarray(self.layer.data[s])[::-1])  # same size, never seen: a real encode
        start = time.perf_counter()
        self.model.embed(plane, rgb=True, contrast_limits=self.layer.contrast_limits)
        return time.perf_counter() - start


def _ratio(a: list[float], b: list[float]) -> float:
    return round(statistics.median(a) / statistics.median(b), 3)


def _run(args) -> dict:
    from napari_rpsam2._widgets.click_widget import DEBOUNCE_MS

    viewer, layer, dock, labels = _open(args.fresh + 1)
    probe = _Probe(viewer, layer, dock)
    rows, cols = np.nonzero(labels[0] == 1)
    picks = [(float(rows[i]), float(cols[i])) for i in np.random.default_rng(0).integers(0, len(rows), args.repeats + 1)]
    probe.widget_click(0, picks[0])  # warm-up: embeds slice 0
    for values in probe.parts.values():
        values.clear()
    widget_t, api_t = [], []
    for rc in picks[1:]:  # interleaved: dock, library, dock, library...
        widget_t.append(probe.widget_click(0, rc))
        api_t.append(probe.api_click(rc))
    breakdown = {f"{k}_ms_median": round(1000 * statistics.median(v), 2) for k, v in probe.parts.items()}
    first_t, encoder_t = [], []
    for s in range(1, args.fresh + 1):
        viewer.dims.set_current_step(0, s)
        _wait(probe.app, lambda: not dock.busy)
        first_t.append(probe.widget_click(s, picks[0]))
        encoder_t.append(probe.encoder(s))
    viewer.close()
    result = {
        "benchmark": "gui_click",
        "widget_ms_median": round(1000 * statistics.median(widget_t), 2),
        "api_ms_median": round(1000 * statistics.median(api_t), 2),
        "widget_to_api_ratio": _ratio(widget_t, api_t),
        "first_click_ms_median": round(1000 * statistics.median(first_t), 1),
        "encoder_ms_median": round(1000 * statistics.median(encoder_t), 1),
        "first_click_to_encoder_ratio": _ratio(first_t, encoder_t),
        "cached_click_breakdown": breakdown,
        "debounce_ms": DEBOUNCE_MS,
        "repeats": args.repeats,
        "fresh_slices": args.fresh,
        "goals": {"widget_to_api_ratio": 1.5, "first_click_to_encoder_ratio": 1.2},
        "device": str(probe.model.device),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
