"""Qt dock widgets of the plugin (thin: the work is done by the Qt-free library).

The manifest (``napari.yaml``) points at the modules directly, so importing
this package does not import napari or Qt.
"""

__all__ = ["ClickWidget", "HeatmapWidget", "TrainingWidget", "PropagateWidget", "OneShotWidget", "AutosegWidget"]


def __getattr__(name: str):
    if name == "ClickWidget":
        from .click_widget import ClickWidget
        return ClickWidget
    if name == "HeatmapWidget":
        from .heatmap_widget import HeatmapWidget
        return HeatmapWidget
    if name == "TrainingWidget":
        from .training_widget import TrainingWidget
        return TrainingWidget
    if name == "PropagateWidget":
        from .propagate_widget import PropagateWidget
        return PropagateWidget
    if name == "OneShotWidget":
        from .oneshot_widget import OneShotWidget
        return OneShotWidget
    if name == "AutosegWidget":
        from .autoseg_widget import AutosegWidget
        return AutosegWidget
    raise AttributeError(name)
