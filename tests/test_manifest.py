"""The npe2 manifest: valid, the widgets in Plugins and Layers ▸ Segment, sample data, readers and a labels writer."""

from __future__ import annotations

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

WIDGETS = {
    "Click segmentation": "ClickWidget",
    "Click-sensitivity heatmap": "HeatmapWidget",
    "Train shift block": "TrainingWidget",
    "Propagate through stack": "PropagateWidget",
    "One-shot segmentation": "OneShotWidget",
    "Automatic segmentation": "AutosegWidget",
}


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_distribution("napari-rpsam2")


def test_manifest_widgets_menus_and_sample(manifest):
    commands = {c.id: c for c in manifest.contributions.commands}
    widgets = {w.display_name: commands[w.command].python_name for w in manifest.contributions.widgets}
    assert {name: path.rsplit(":", 1)[1] for name, path in widgets.items()} == WIDGETS
    segment = {item.command for item in manifest.contributions.menus["napari/layers/segment"]}
    assert segment == {w.command for w in manifest.contributions.widgets}
    (sample,) = manifest.contributions.sample_data
    assert commands[sample.command].python_name == "napari_rpsam2.sample_data:sample_stack"


def test_manifest_reader_and_labels_writer(manifest, tmp_path):
    commands = {c.id: c for c in manifest.contributions.commands}
    (reader,) = manifest.contributions.readers
    assert commands[reader.command].python_name == "napari_rpsam2._napari_io:get_reader"
    assert reader.accepts_directories
    assert {"*.mp4", "*.avi", "*.mov", "*.nii", "*.nii.gz", "*.zarr"} <= set(reader.filename_patterns)
    (writer,) = manifest.contributions.writers
    assert commands[writer.command].python_name == "napari_rpsam2._napari_io:write_labels_layer"
    assert list(writer.layer_types) == ["labels"]
    assert {".tif", ".nii.gz", ".png"} <= set(writer.filename_extensions)
    from napari_rpsam2._napari_io import get_reader

    (tmp_path / "a.txt").write_text("x")
    assert get_reader(str(tmp_path / "a.txt")) is None  # napari's own readers handle what the plugin does not


def test_manifest_python_names_import(manifest):
    import importlib

    for command in manifest.contributions.commands:
        module, name = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), name))


@pytest.mark.gui
def test_sample_data_and_widgets_open_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-rpsam2", "instruments")
    image, labels = viewer.layers
    assert image.rgb and image.data.shape[-1] == 3 and labels.data.shape == image.data.shape[:3]
    assert set(np.unique(labels.data)) == {0, 1, 2}
    for name, cls in WIDGETS.items():
        _, widget = viewer.window.add_plugin_dock_widget("napari-rpsam2", name)
        assert type(widget).__name__ == cls
