"""GUI faults in a real napari viewer: closing it mid-job, training while clicking, bad input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtCore import QThreadPool, Qt  # noqa: E402

from napari_rpsam2 import RPSAM2  # noqa: E402
from napari_rpsam2.model import read_header  # noqa: E402

CLICK = "Click segmentation"
TRAIN = "Train shift block"


def _no_workers() -> bool:
    """No thread worker (napari's create_worker) is running any more."""
    return QThreadPool.globalInstance().activeThreadCount() == 0


def _training_widget(viewer, qtbot, model: RPSAM2, image_layer, labels_layer, out, epochs: str = "1500") -> object:
    from gui_forms import click, type_into

    from napari_rpsam2._widgets._workspace import workspace_for

    _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", TRAIN)
    workspace_for(viewer).set_model(RPSAM2(model.backbone))
    widget.image_picker.set_layer(image_layer)
    widget.labels_picker.set_layer(labels_layer)
    click(qtbot, widget.params_button)
    for field, text in ((widget.form.grid_stride, "32"), (widget.form.eval_clicks, "1"),
                        (widget.form.clicks_per_object, "1"), (widget.form.epochs, epochs), (widget.out, str(out))):
        type_into(qtbot, field, text)
    return widget


@pytest.mark.background_embedding
def test_closing_the_viewer_stops_training_and_background_embedding(make_napari_viewer, qtbot, tmp_path,
                                                                     instrument_stack, model) -> None:
    image, labels = instrument_stack
    viewer = make_napari_viewer()
    train_image = viewer.add_image(image[:2], rgb=True, name="frames")
    train_labels = viewer.add_labels(labels[:2], name="labels")
    training = _training_widget(viewer, qtbot, model, train_image, train_labels, tmp_path / "shift.safetensors")
    new_stack = viewer.add_image(np.ascontiguousarray(image[..., ::-1]), rgb=True, name="not yet embedded")
    _, click = viewer.window.add_plugin_dock_widget("napari-rpsam2", CLICK)
    click.image_picker.set_layer(new_stack)
    click.set_model(RPSAM2(model.backbone))
    qtbot.mouseClick(training.start_button, Qt.MouseButton.LeftButton)
    assert training.running and click.embedder.running
    train_flag, embed_flag = training._cancel, click.embedder._cancel
    assert not train_flag() and not embed_flag()

    viewer.close()  # mid-job: dock widgets get no close event, only deletion
    qtbot.waitUntil(lambda: train_flag() and embed_flag(), timeout=10_000)
    qtbot.waitUntil(_no_workers, timeout=120_000)  # both jobs stop at their next check
    out = tmp_path / "shift.safetensors"
    assert not out.exists() or read_header(out)["training"]["epoch"] >= 1  # nothing half-written
    assert not list(tmp_path.glob("*.tmp"))


def test_training_while_clicking_keeps_both_working(make_napari_viewer, qtbot, tmp_path, instrument_stack,
                                                    model, frame0) -> None:
    image, labels = instrument_stack
    viewer = make_napari_viewer()
    frames = viewer.add_image(image[:2], rgb=True, name="frames")  # 2 slices, no validation pair: split
    painted = viewer.add_labels(labels[:2], name="labels")
    _, click = viewer.window.add_plugin_dock_widget("napari-rpsam2", CLICK)
    click.set_model(RPSAM2(model.backbone))
    click.image_picker.set_layer(frames)
    out = tmp_path / "shift.safetensors"
    # 1000 epochs: long enough to still run while the clicks are answered
    training = _training_widget(viewer, qtbot, model, frames, painted, out, epochs="1000")
    qtbot.mouseClick(training.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(training.plot.logs) >= 1, timeout=150_000)  # in the epoch loop now

    prompts, preview = click.layers()["prompts"], click.layers()["preview"]
    viewer.dims.set_current_step(0, 0)
    masks = []
    for point in ([0.0, 170.0, 80.0], [0.0, 60.0, 250.0]):  # forceps shaft, then elsewhere
        prompts.data = np.array([point])
        qtbot.waitUntil(lambda: click.preview_mask() is not None and not click.busy, timeout=60_000)
        masks.append(np.asarray(preview.data[0]).copy())
        assert training.running, "training ended before the click was answered: nothing was concurrent"
    assert masks[0].any() and masks[1].any() and not np.array_equal(masks[0], masks[1])
    assert "mask of" in click.status.text()

    done = len(training.plot.logs)
    qtbot.waitUntil(lambda: len(training.plot.logs) > done, timeout=150_000)  # still training after the clicks
    qtbot.mouseClick(training.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not training.running, timeout=150_000)
    result = training.trained.result
    assert result.cancelled and len(result.history) >= 2
    assert all(h.val_mdsc is not None for h in result.history)  # split by slice gave a validation slice
    assert out.exists() and read_header(out)["training"]["epoch"] == result.best_epoch


def test_bad_input_in_widgets_gives_messages(make_napari_viewer, qtbot, tmp_path, frame0, model) -> None:
    image, labels, _ = frame0
    viewer = make_napari_viewer()
    img = viewer.add_image(np.stack([image, image]), rgb=True, name="pair")
    wrong = viewer.add_labels(np.stack([labels, labels])[:, :200], name="cropped")
    training = _training_widget(viewer, qtbot, model, img, wrong, tmp_path / "x.safetensors")

    # labels of another shape than the image
    qtbot.mouseClick(training.start_button, Qt.MouseButton.LeftButton)
    assert not training.running
    assert "'cropped' has shape (2, 200, 320) but the image needs (2, 256, 320)" in training.status.text()

    # negative label ids: the data loader's message, naming the slice, in the widget
    negative = np.stack([labels, labels]).astype(np.int32)
    negative[1, 0, 0] = -1
    training.labels_picker.set_layer(viewer.add_labels(negative, name="negative"))
    qtbot.mouseClick(training.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not training.running, timeout=30_000)
    assert "Training failed: labels (slice 1): labels contain negative ids" in training.status.text()
    assert not (tmp_path / "x.safetensors").exists()

    # clicks outside the image: a message in the click widget, no crash, and it recovers
    viewer.layers.remove(img)
    flat = viewer.add_image(image, rgb=True, name="frame")
    _, click = viewer.window.add_plugin_dock_widget("napari-rpsam2", CLICK)
    click.set_model(RPSAM2(model.backbone))
    click.image_picker.set_layer(flat)
    prompts = click.layers()["prompts"]
    prompts.data = np.array([[-20.0, 100.0]])
    qtbot.waitUntil(lambda: "outside the 256×320 image" in click.status.text() and not click.busy, timeout=60_000)
    assert len(prompts.data) == 0  # refused, not kept (issue 8, defect 4)
    assert click.preview_mask() is None
    prompts.data = np.array([[170.0, 80.0]])
    qtbot.waitUntil(lambda: click.preview_mask() is not None and not click.busy, timeout=60_000)
    assert "mask of" in click.status.text()
