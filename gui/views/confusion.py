"""Confusion matrix: validation counts each epoch (rows: true class, columns: predicted),
class names on the axes, a colour bar, the count in each cell, per-class accuracy beside it.

The layout follows pyqtgraph's MatrixDisplayExample: an ImageItem, tick labels for the
classes and a ColorBarItem. Cell texts are made once per matrix size and only re-texted.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from gui.views import RunView
from gui.views.graphics import TimedGraphics

MAX_CELL_TEXT = 20  # classes; beyond this the numbers would not fit in the cells


class ConfusionView(RunView):
    tab_title, order = "Confusion matrix", 30
    series = ("val/confusion",)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.title = QLabel("No confusion matrix yet: it appears after the first validation.")
        layout.addWidget(self.title)
        self.graphics = TimedGraphics()
        self.graphics.setBackground("w")
        layout.addWidget(self.graphics, 1)
        self.plot = self.graphics.addPlot(row=0, col=0)
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.setMouseEnabled(False, False)
        self.plot.setLabel("left", "true class")
        self.plot.setLabel("bottom", "predicted class")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.colour_bar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("CET-L12"),
                                          interactive=False, label="images")
        self.colour_bar.setImageItem(self.image, insert_in=self.plot)
        self.acc_plot = self.graphics.addPlot(row=0, col=1)
        self.acc_plot.setLabel("bottom", "per-class accuracy")
        self.acc_plot.invertY(True)
        self.acc_plot.setYLink(self.plot)
        self.acc_plot.hideAxis("left")
        self.acc_plot.setXRange(0, 1.4, padding=0)
        self.acc_plot.setMouseEnabled(False, False)
        self.acc_plot.setMaximumWidth(190)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush="#4c72b0")
        self.acc_plot.addItem(self.bars)
        self.graphics.ci.layout.setColumnStretchFactor(0, 4)
        self._cell_text: list[pg.TextItem] = []
        self._acc_text: list[pg.TextItem] = []
        self._names: list[str] = []
        self._dirty = False
        self.matrix: Optional[np.ndarray] = None
        self.per_class: Optional[np.ndarray] = None
        self._rec = None

    def set_matrix(self, matrix: Optional[np.ndarray], class_names: Sequence[str]) -> None:
        """A new matrix; drawn by the next `refresh()`."""
        self.matrix = None if matrix is None else np.asarray(matrix)
        self._names = [str(c) for c in class_names] if class_names else (
            [] if matrix is None else [str(i) for i in range(len(matrix))])
        self._dirty = True

    def show_runs(self, shown, ticked: list) -> None:
        self._rec = shown
        self.set_matrix(shown.confusion if shown is not None else None,
                        shown.class_names if shown is not None else [])

    def refresh(self) -> None:
        rec = getattr(self, "_rec", None)
        if rec is not None and rec.confusion is not self.matrix:  # a new validation's matrix
            self.set_matrix(rec.confusion, rec.class_names)
        if not self._dirty:
            return
        self._dirty = False
        cm = self.matrix
        if cm is None:
            self.image.clear()
            self._make_texts(0)
            self.bars.setOpts(x0=[], y=[], width=[])
            self.title.setText("No confusion matrix yet: it appears after the first validation.")
            return
        k = len(cm)
        counts = cm.astype(np.int64)
        totals = counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.per_class = np.where(totals > 0, counts.diagonal() / totals, np.nan)
        top = max(int(counts.max()), 1)
        # Pixel (i, j) spans [j, j+1] x [i, i+1]: centres at integer + 0.5.
        self.image.setImage(counts.astype(np.float32), levels=(0, top), autoLevels=False)
        self.colour_bar.setLevels((0, top))
        ticks = [[(i + 0.5, name) for i, name in enumerate(self._names)]]
        self.plot.getAxis("left").setTicks(ticks)
        self.plot.getAxis("bottom").setTicks(ticks)
        self._make_texts(k)
        if k <= MAX_CELL_TEXT:
            for i in range(k):
                for j in range(k):
                    text = self._cell_text[i * k + j]
                    text.setText(str(counts[i, j]))
                    text.setColor("w" if counts[i, j] > top / 2 else "k")
        acc = np.nan_to_num(self.per_class)
        self.bars.setOpts(x0=np.zeros(k), y=np.arange(k) + 0.5, width=acc, height=0.7)
        for i, text in enumerate(self._acc_text):
            text.setText("–" if np.isnan(self.per_class[i]) else f"{self.per_class[i]:.1%}")
            text.setPos(acc[i], i + 0.5)
        n, right = int(counts.sum()), int(counts.diagonal().sum())
        when = getattr(self, "_rec", None) and self._rec.confusion_when
        self.title.setText((f"{when}: " if when else "validation set: ") +
                           f"{n} images, {right} right, accuracy {right / max(n, 1):.2%} "
                           f"(rows: true class, columns: predicted)")

    def _make_texts(self, k: int) -> None:
        cells = k * k if k <= MAX_CELL_TEXT else 0
        if len(self._cell_text) != cells:
            for text in self._cell_text:
                self.plot.removeItem(text)
            self._cell_text = []
            for i in range(k if cells else 0):
                for j in range(k):
                    text = pg.TextItem("", anchor=(0.5, 0.5))
                    text.setPos(j + 0.5, i + 0.5)
                    self.plot.addItem(text)
                    self._cell_text.append(text)
        if len(self._acc_text) != k:
            for text in self._acc_text:
                self.acc_plot.removeItem(text)
            self._acc_text = []
            for _ in range(k):
                text = pg.TextItem("", anchor=(0, 0.5), color="k")
                self.acc_plot.addItem(text)
                self._acc_text.append(text)
