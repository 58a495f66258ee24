"""Live training plot: loss terms and validation Dice per epoch (matplotlib in Qt)."""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

__all__ = ["TrainingPlot"]

TERMS = (("loss", "total"), ("dice_loss", "Dice"), ("dist_loss", "dist"), ("out_loss", "out"))


class TrainingPlot(FigureCanvasQTAgg):
    """Loss terms (left axis) and validation mDSC in % (right axis) against the epoch."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(4.0, 2.6), dpi=90, layout="constrained")
        super().__init__(self.figure)
        self.setMinimumHeight(200)
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
        epochs = [log.epoch for log in self.logs]
        for attr, label in TERMS:
            ax.plot(epochs, [getattr(log, attr) for log in self.logs], marker=".", label=label)
        val = [(log.epoch, log.val_mdsc) for log in self.logs if log.val_mdsc is not None]
        if val:
            axv.plot(*zip(*val), color="black", linestyle="--", marker="o", markersize=3, label="val mDSC")
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        axv.set_ylabel("val mDSC (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        axv.tick_params(labelsize=7)
        handles = ax.get_legend_handles_labels()
        handles_v = axv.get_legend_handles_labels()
        if self.logs:
            ax.legend(handles[0] + handles_v[0], handles[1] + handles_v[1], fontsize=7, loc="upper right")
        else:
            ax.text(0.5, 0.5, "loss terms and validation Dice\nappear here per epoch", ha="center",
                    va="center", transform=ax.transAxes, fontsize=8, color="gray")
        self.draw_idle()
