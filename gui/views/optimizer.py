"""Optimizer: what the optimizer itself did at every step, for the selected run.

Answers "what learning rate did the step actually use?" (the schedule, as applied), "what step
size did a learning-rate-free method choose?" (Prodigy's d, `train/d`) and, for Muon, "which
layers did Muon move and which AdamW?" (the split recorded in summary.json).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from gui.views import RunView
from gui.views.graphics import TimedGraphics


class OptimizerView(RunView):
    tab_title, order = "Optimizer", 50
    series = ("train/lr", "train/d")

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.info = QLabel("No run selected.")
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        self.graphics = TimedGraphics()
        self.graphics.setBackground("w")
        layout.addWidget(self.graphics, 1)
        self.lr_plot = self.graphics.addPlot(row=0, col=0)
        self.lr_plot.setTitle("learning rate used at each step")
        self.lr_plot.setLabel("bottom", "batch")
        self.lr_plot.setLabel("left", "lr")
        self.lr_plot.showGrid(x=True, y=True, alpha=0.25)
        self.lr_plot.getAxis("left").enableAutoSIPrefix(False)  # "lr 0.05", not "lr (x0.001) 50"
        self.lr_curve = self.lr_plot.plot(pen=pg.mkPen("#1f77b4", width=2))
        self.d_plot = self.graphics.addPlot(row=1, col=0)
        self.d_plot.setTitle("step size the optimizer estimated for itself (Prodigy's d)")
        self.d_plot.setLabel("bottom", "batch")
        self.d_plot.setLabel("left", "d")
        self.d_plot.setLogMode(y=True)
        self.d_plot.showGrid(x=True, y=True, alpha=0.25)
        self.d_plot.setXLink(self.lr_plot)
        self.d_curve = self.d_plot.plot(pen=pg.mkPen("#d62728", width=2))
        self._rec = None
        self._count = (-1, -1, None)

    def show_runs(self, shown, ticked: list) -> None:
        if shown is not self._rec:
            self._rec, self._count = shown, (-1, -1, None)
        self.refresh()

    def refresh(self) -> None:
        rec = self._rec
        if rec is None:
            self.info.setText("No run selected.")
            return
        x_lr, lr = rec.step_series("train/lr")
        x_d, d = rec.step_series("train/d")
        count = (len(x_lr), len(x_d), id(rec.summary))
        if count == self._count:
            return
        self._count = count
        self.lr_curve.setData(x_lr, lr)
        if len(lr):  # from 0: a constant rate is a flat line at its height, not a centred one
            self.lr_plot.setYRange(0, float(np.nanmax(lr)) * 1.1 or 1.0, padding=0)
        ok = np.isfinite(d) & (d > 0)
        self.d_curve.setData(x_d[ok], d[ok])
        self.d_plot.setVisible(bool(len(x_d)))
        lines = [f"{rec.name}: {rec.optimizer}"]
        if len(lr):
            lines.append(f"lr at {rec.latest_step_text()}: {lr[-1]:.4g} (from {lr[0]:.4g})")
        if len(d):
            lines.append(f"d now {d[-1]:.4g}")
        parts = (rec.summary or {}).get("optimizer_parts")
        if parts:
            split = {}
            for name, part in parts.items():
                split.setdefault(part, []).append(name)
            lines.append("; ".join(f"{part}: {', '.join(names)}" for part, names in sorted(split.items())))
        elif rec.optimizer == "muon" or ((rec.config.get("model") or {}).get("optimizer_args") or {}).get("base") == "muon":
            lines.append("Muon's split (which layers Muon moves, which AdamW) shows when the run ends.")
        if not len(x_lr):
            lines.append("No per-step values recorded (runs saved before steps.csv existed have none).")
        self.info.setText(" · ".join(lines))
