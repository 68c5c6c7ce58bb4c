"""The learning-rate finder's result: loss against learning rate (log axis), the suggested
rate marked, and "Use suggested lr" to put it in the form (lit_opt/lr_find.py runs the test).

    dialog = LrFinderDialog(result, parent)   # result: lit_opt.lr_find.find_lr's dict
    dialog.use_lr.connect(form_setter)         # float: the suggested rate
    dialog.show()
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPushButton, QVBoxLayout, QWidget


class LrFinderDialog(QDialog):
    use_lr = Signal(float)

    def __init__(self, result: dict, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.result = result
        self.suggestion: Optional[float] = result.get("suggestion")
        self.setWindowTitle("Learning-rate finder")
        self.resize(640, 460)
        layout = QVBoxLayout(self)
        s = self.suggestion
        self.summary = QLabel(
            f"{result['optimizer']} on {result['dataset']} ({result['net']}, batch {result['batch_size']}): "
            f"{len(result['lr'])} batches, the rate rising from {result['lr'][0]:.2g} to {result['lr'][-1]:.2g}. "
            + (f"Suggested: <b>{s:.3g}</b>, where the loss falls fastest." if s is not None
               else "No suggestion: the loss never fell; try a wider range."))
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLogMode(x=True)
        self.plot.setLabel("bottom", "learning rate")
        self.plot.setLabel("left", "training loss (smoothed)")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        lrs, losses = np.asarray(result["lr"], float), np.asarray(result["loss"], float)
        ok = np.isfinite(losses)
        self.curve = self.plot.plot(lrs[ok], losses[ok], pen=pg.mkPen("#1f77b4", width=2))
        if s is not None:  # a log x axis places items at log10 of the value
            self.plot.addItem(pg.InfiniteLine(np.log10(s), angle=90, pen=pg.mkPen("#d62728", width=1, style=Qt.PenStyle.DashLine)))
        layout.addWidget(self.plot, 1)
        buttons = QDialogButtonBox()
        self.use_button = QPushButton("Use suggested lr")
        self.use_button.setEnabled(s is not None)
        self.use_button.clicked.connect(self._on_use)
        buttons.addButton(self.use_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    @Slot()
    def _on_use(self) -> None:
        if self.suggestion is not None:
            self.use_lr.emit(float(self.suggestion))
        self.accept()
