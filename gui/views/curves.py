"""Curves: training loss per step (raw faint, smoothed bold), validation loss and accuracy
per epoch, the L2 term when the run has one; several runs overlaid to compare them.

    view = CurvesView()
    view.set_runs([record])          # one run: its every curve; several: one colour per run
    view.refresh()                   # setData on the existing items (the window's timer calls it)

Plot items are made when the set of shown runs changes, and only updated by `refresh`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui.records import RunRecord
from gui.views import RunView

# Matplotlib's tab10: distinct on white, in the seminar's plots' order.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


class _RunItems:
    """The plot items of one shown run."""

    def __init__(self, view: "CurvesView", rec: RunRecord, colour: str, single: bool):
        self.rec = rec
        loss, acc = view.loss_plot, view.acc_plot
        c = pg.mkColor(colour)
        faint = pg.mkColor(colour)
        faint.setAlpha(60)
        name = None if single else rec.label
        self.raw = loss.plot(pen=pg.mkPen(faint, width=1), name="train loss (raw)" if single else None)
        self.smooth = loss.plot(pen=pg.mkPen(c, width=2),
                                name="train loss (smoothed)" if single else f"{name} train")
        self.val_loss = loss.plot(pen=pg.mkPen(c, width=1, style=Qt.PenStyle.DashLine), symbol="o",
                                  symbolSize=7, symbolBrush=c, symbolPen=None,
                                  name="val loss" if single else f"{name} val")
        self.l2 = None
        if rec.l2:
            self.l2 = loss.plot(pen=pg.mkPen(c, width=1, style=Qt.PenStyle.DotLine), symbol="t",
                                symbolSize=6, symbolBrush=c, symbolPen=None,
                                name="L2 term" if single else f"{name} L2 term")
        self.val_acc = acc.plot(pen=pg.mkPen(c, width=2), symbol="o", symbolSize=7, symbolBrush=c,
                                symbolPen=None, name="val acc" if single else name)
        self.train_acc = None
        if single:
            self.train_acc = acc.plot(pen=pg.mkPen(c, width=1, style=Qt.PenStyle.DashLine), symbol="s",
                                      symbolSize=5, symbolBrush=c, symbolPen=None, name="train acc")
        for item in (self.raw, self.smooth):
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)

    def update(self) -> None:
        rec = self.rec
        n = len(rec.step_x)
        x = np.fromiter(rec.step_x, float, n)
        self.raw.setData(x, np.fromiter(rec.step_loss, float, n))
        self.smooth.setData(x, np.fromiter(rec.step_smooth, float, n))
        self.val_loss.setData(*rec.epoch_end_series("val/loss"))
        if self.l2 is not None:
            key = "train/l2" if any(e.get("train/l2") is not None for e in rec.epochs) else "l2_term"
            self.l2.setData(*rec.epoch_end_series(key))
        self.val_acc.setData(*rec.epoch_series("val/acc"))
        if self.train_acc is not None:
            self.train_acc.setData(*rec.epoch_series("train/acc"))


class CurvesView(RunView):
    tab_title, order = "Curves", 10
    series = ("train/loss", "val/loss", "val/acc", "train/acc", "train/l2")

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.title = QLabel("No run selected. Start one, or pick one in the run list.")
        self.log_scale = QCheckBox("log-scale loss")
        self.log_scale.setObjectName("log_scale")
        self.log_scale.toggled.connect(self._on_log)
        bar.addWidget(self.title, 1)
        bar.addWidget(self.log_scale)
        layout.addLayout(bar)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        layout.addWidget(self.graphics, 1)
        self.loss_plot = self.graphics.addPlot(row=0, col=0)
        self.loss_plot.setTitle("loss: training per step, validation per epoch")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.showGrid(x=True, y=True, alpha=0.25)
        self.loss_legend = self.loss_plot.addLegend(offset=(-10, 10))
        self.acc_plot = self.graphics.addPlot(row=1, col=0)
        self.acc_plot.setTitle("accuracy per epoch")
        self.acc_plot.setLabel("bottom", "epoch")
        self.acc_plot.setLabel("left", "accuracy")
        self.acc_plot.getAxis("left").enableAutoSIPrefix(False)
        self.acc_plot.showGrid(x=True, y=True, alpha=0.25)
        self.acc_legend = self.acc_plot.addLegend(offset=(-10, -10))
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        self._items: dict[str, _RunItems] = {}
        self._shown: list[RunRecord] = []

    def show_runs(self, shown: Optional[RunRecord], ticked: list[RunRecord]) -> None:
        """The selected run first, then the ticked ones."""
        runs = [shown] if shown is not None else []
        self.set_runs(runs + [r for r in ticked if all(r is not x for x in runs)])

    def set_runs(self, records: list[RunRecord]) -> None:
        """Show these runs (the first alone gets every curve; several get one colour each)."""
        if [r.run_dir for r in records] == [r.run_dir for r in self._shown]:
            self.refresh()
            return
        for plot, legend in ((self.loss_plot, self.loss_legend), (self.acc_plot, self.acc_legend)):
            legend.clear()
            for item in list(plot.listDataItems()):
                plot.removeItem(item)
        self._shown = list(records)
        single = len(records) == 1
        self._items = {str(r.run_dir): _RunItems(self, r, PALETTE[i % len(PALETTE)], single)
                       for i, r in enumerate(records)}
        if not records:
            self.title.setText("No run selected. Start one, or pick one in the run list.")
        elif single:
            self.title.setText(f"{records[0].name}: {records[0].label}")
        else:
            self.title.setText(f"comparing {len(records)} runs")
        self.refresh()

    def items(self, rec: RunRecord) -> Optional[_RunItems]:
        return self._items.get(str(rec.run_dir))

    def refresh(self) -> None:
        for items in self._items.values():
            items.update()

    @Slot(bool)
    def _on_log(self, on: bool) -> None:
        self.loss_plot.setLogMode(y=on)
