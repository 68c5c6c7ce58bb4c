"""Gradients: each layer's gradient norm at every optimizer step, for the selected run.

Answers "which layers learn, and is any gradient vanishing or exploding?": on a log axis,
one curve per layer (named by what it is, "dense 784->100"), drawn from the run's
`train/grad_norm` series (lit_opt/diagnostics/grad_norms.py), live or read back from
steps.csv.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from gui.views import RunView
from gui.views.curves import PALETTE

SERIES = "train/grad_norm"


class GradNormView(RunView):
    tab_title, order = "Gradients", 40
    series = (SERIES,)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.info = QLabel("No run selected.")
        layout.addWidget(self.info)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        layout.addWidget(self.graphics, 1)
        self.plot = self.graphics.addPlot()
        self.plot.setTitle("gradient norm per layer, every optimizer step")
        self.plot.setLabel("bottom", "batch")
        self.plot.setLabel("left", "||gradient||")
        self.plot.setLogMode(y=True)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.legend = self.plot.addLegend(offset=(-10, 10))
        self._rec = None
        self._layers: list[str] = []
        self._curves: list = []
        self._count = -1  # rows drawn

    def show_runs(self, shown, ticked: list) -> None:
        if shown is not self._rec:
            self._rec, self._count = shown, -1
            self._set_layers([])
        self.refresh()

    def _set_layers(self, layers: list[str]) -> None:
        self.legend.clear()
        for item in self._curves:
            self.plot.removeItem(item)
        self._layers = list(layers)
        self._curves = []
        for i, name in enumerate(layers):
            item = self.plot.plot(pen=pg.mkPen(PALETTE[i % len(PALETTE)], width=1), name=name)
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
            self._curves.append(item)

    def refresh(self) -> None:
        rec = self._rec
        if rec is None:
            self.info.setText("No run selected.")
            return
        x, y = rec.step_series(SERIES)
        if len(x) == self._count and rec.elements.get(SERIES, []) == self._layers:
            return
        self._count = len(x)
        if rec.elements.get(SERIES, []) != self._layers:
            self._set_layers(rec.elements.get(SERIES, []))
        if not len(x):
            self.info.setText(f"{rec.name}: no gradient norms recorded (runs saved before steps.csv existed have none).")
            for item in self._curves:
                item.setData([], [])
            return
        for i, item in enumerate(self._curves):
            values = y[:, i]
            ok = np.isfinite(values) & (values > 0)  # a log axis: zero and NaN are not drawn
            item.setData(x[ok], values[ok])
        last = ", ".join(f"{name} {v:.3g}" for name, v in zip(self._layers, y[-1]))
        self.info.setText(f"{rec.name}: {len(x)} steps; latest ({rec.latest_step_text()}): {last}")
