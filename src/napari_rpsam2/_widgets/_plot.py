"""Live training plot: loss terms and validation Dice per epoch (matplotlib in Qt).

Sized for a dock at most 420 px wide: whole-number epoch ticks, the legend
below the axes (never over the lines), the right axis labelled on the right.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["TrainingPlot"]

TERMS = (("loss", "total"), ("dice_loss", "Dice"), ("dist_loss", "dist"), ("out_loss", "out"))


class TrainingPlot(FigureCanvasQTAgg):
    """Loss terms (left axis) and validation mDSC in % (right axis) against the epoch."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(3.9, 2.9), dpi=90, layout="constrained")
        super().__init__(self.figure)
        self.setMinimumHeight(230)
        self.setMinimumWidth(200)
        self.ax = self.figure.add_subplot(1, 1, 1)
        self.ax_val = self.ax.twinx()
        self.logs: list[Any] = []
        self.clear()

    def clear(self) -> None:
        """Forget all epochs."""
        self.logs = []
        self._draw()

    def add(self, log: Any) -> None:
        """Append one ``EpochLog`` and redraw."""
        self.logs.append(log)
        self._draw()

    def _draw(self) -> None:
        ax, axv = self.ax, self.ax_val
        ax.clear()
        axv.clear()
        for legend in list(self.figure.legends):
            legend.remove()
        epochs = [log.epoch for log in self.logs]
        for attr, label in TERMS:  # the terms the logs have (a generator or adapter run logs its loss only)
            if all(hasattr(log, attr) for log in self.logs):
                ax.plot(epochs, [getattr(log, attr) for log in self.logs], marker=".", label=label)
        val = [(log.epoch, v) for log in self.logs if (v := getattr(log, "val_mdsc", None)) is not None]
        if val:
            axv.plot(*zip(*val), color="black", linestyle="--", marker="o", markersize=3, label="val mDSC")
        axv.set_visible(bool(val) or not self.logs)  # a run without validation (adapters) has no right axis
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        axv.set_ylabel("val mDSC (%)", fontsize=8)
        axv.yaxis.set_label_position("right")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.tick_params(labelsize=7)
        axv.tick_params(labelsize=7)
        handles, labels = ax.get_legend_handles_labels()
        handles_v, labels_v = axv.get_legend_handles_labels()
        if self.logs:
            self.figure.legend(handles + handles_v, labels + labels_v, fontsize=7, loc="outside lower center",
                               ncol=5, frameon=False, handlelength=1.5, columnspacing=0.8)
        else:
            ax.text(0.5, 0.5, "loss terms and validation Dice\nappear here per epoch", ha="center",
                    va="center", transform=ax.transAxes, fontsize=8, color="gray")
        self.draw_idle()
