"""Curves: training loss per step (smoothed bold, raw faint), validation loss and accuracy at
each epoch's end, the L2 term when the run has one; ticked runs compared.

    view = CurvesView()
    view.set_runs([record])          # one run: its every curve; several: compared
    view.refresh()                   # setData on the existing items (the window's timer calls it)

A comparison works as in W&B or Aim: each run is labelled by the settings that differ
between the runs compared, runs that differ only in their seed are one mean curve with a
+-1 std band, and the side legend shows or hides each. The controls above the plots choose
the x axis (step, epoch, samples seen, wall time), TensorBoard's smoothing and a log loss
axis; a crosshair reads every curve's value under the cursor; "Export" saves the plots as
PNG or SVG and their data as CSV. What is drawn is computed in gui/comparison.py.

Plot items are made when the set of shown runs or the x axis changes, and only updated by
`refresh`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QAction, QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel,
                               QListWidget, QListWidgetItem, QMenu, QSplitter, QToolButton, QVBoxLayout, QWidget)

from gui import comparison
from gui.records import RunRecord
from gui.views import RunView
from gui.views.graphics import TimedGraphics
from gui.widgets.fields import guard_wheel

# Matplotlib's tab10: distinct on white, in the seminar's plots' order.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
SMOOTHING = 0.6  # TensorBoard's default weight


class IntegerAxis(pg.AxisItem):
    """Ticks only at whole numbers when the axis counts steps or epochs (no epoch 1.1, 1.2, ...)."""

    integer = True

    def tickValues(self, minVal, maxVal, size):
        levels = super().tickValues(minVal, maxVal, size)
        if not self.integer:
            return levels
        kept = [(spacing, [v for v in values if float(v).is_integer()]) for spacing, values in levels
                if spacing >= 1]
        if not kept and math.isfinite(minVal) and math.isfinite(maxVal) and maxVal - minVal < 20:
            kept = [(1.0, [float(v) for v in range(math.ceil(minVal), math.floor(maxVal) + 1)])]
        return kept


class _Curve:
    """One drawn line: its plot item, what it is, and the data last given to it."""

    def __init__(self, item, entry: str, what: str, plot: str):
        self.item, self.entry, self.what, self.plot = item, entry, what, plot
        self.x = self.y = np.array([], float)

    def set(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = np.asarray(x, float), np.asarray(y, float)
        self.item.setData(self.x, self.y)


class _Entry:
    """A legend row: one run (or one group of seeds), its colour and its curves."""

    def __init__(self, label: str, colour: str, runs: list[RunRecord]):
        self.label, self.colour, self.runs = label, colour, runs
        self.curves: list[_Curve] = []
        self.extra: list = []  # bands, raw curves: shown and hidden with the entry
        self.smoothers: dict[str, comparison.Smoother] = {}


class CurvesView(RunView):
    tab_title, order = "Curves", 10
    series = ("train/loss", "val/loss", "val/acc", "train/acc", "train/l2")

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.title = QLabel("No run selected. Start one, or pick one in the run list.")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bar.addWidget(self.title, 1)
        bar.addWidget(QLabel("x:"))
        self.x_axis = QComboBox()
        self.x_axis.setObjectName("x_axis")
        for key, text in comparison.AXES.items():
            self.x_axis.addItem(text, key)
        self.x_axis.setToolTip("line runs up by step, epoch, training images seen or wall time")
        self.x_axis.currentIndexChanged.connect(self._on_axis)
        bar.addWidget(self.x_axis)
        bar.addWidget(QLabel("smoothing:"))
        self.smoothing = QDoubleSpinBox()
        self.smoothing.setObjectName("smoothing")
        self.smoothing.setRange(0.0, 0.99)
        self.smoothing.setSingleStep(0.05)
        self.smoothing.setDecimals(2)
        self.smoothing.setValue(SMOOTHING)
        self.smoothing.setToolTip("TensorBoard's exponential moving average of the training loss "
                                  "(0: raw); the raw curve stays faint behind it")
        self.smoothing.valueChanged.connect(self._on_smoothing)
        bar.addWidget(self.smoothing)
        for box in (self.x_axis, self.smoothing):
            guard_wheel(box)
        self.log_scale = QCheckBox("log loss")
        self.log_scale.setObjectName("log_scale")
        self.log_scale.toggled.connect(self._on_log)
        bar.addWidget(self.log_scale)
        self.export_button = QToolButton()
        self.export_button.setObjectName("export")
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        for text, slot in (("Plots as PNG…", lambda: self._ask_export("png")),
                           ("Plots as SVG…", lambda: self._ask_export("svg")),
                           ("Data as CSV…", lambda: self._ask_export("csv"))):
            action = QAction(text, menu)
            action.triggered.connect(slot)
            menu.addAction(action)
        self.export_button.setMenu(menu)
        bar.addWidget(self.export_button)
        layout.addLayout(bar)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.graphics = TimedGraphics()
        self.graphics.setBackground("w")
        split.addWidget(self.graphics)
        self.legend = QListWidget()
        self.legend.setObjectName("legend")
        self.legend.setToolTip("untick to hide a run's curves")
        self.legend.setWordWrap(True)  # a long label wraps rather than hiding behind a scroll bar
        self.legend.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.legend.itemChanged.connect(self._on_legend)
        split.addWidget(self.legend)
        split.setStretchFactor(0, 1)
        split.setSizes([800, 220])
        layout.addWidget(split, 1)
        self.readout = QLabel(" ")
        self.readout.setObjectName("readout")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.readout.setWordWrap(True)
        layout.addWidget(self.readout)

        self._axes = {name: IntegerAxis("bottom") for name in ("loss", "acc")}
        self.loss_plot = self.graphics.addPlot(row=0, col=0, axisItems={"bottom": self._axes["loss"]})
        self.loss_plot.setTitle("loss: training per step (raw faint), validation per epoch")
        self.loss_plot.setLabel("left", "loss")
        self.acc_plot = self.graphics.addPlot(row=1, col=0, axisItems={"bottom": self._axes["acc"]})
        self.acc_plot.setTitle("accuracy per epoch")
        self.acc_plot.setLabel("left", "accuracy")
        self.acc_plot.setXLink(self.loss_plot)
        for plot in (self.loss_plot, self.acc_plot):
            plot.showGrid(x=True, y=True, alpha=0.25)
            # An empty plot must not keep a diverged run's "x1e+09" on its axis.
            plot.getAxis("left").enableAutoSIPrefix(False)
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        self._cross = {}
        for name, plot in (("loss", self.loss_plot), ("acc", self.acc_plot)):
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888888", width=1))
            line.setVisible(False)
            plot.addItem(line, ignoreBounds=True)
            self._cross[name] = line
        self._mouse = pg.SignalProxy(self.graphics.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse)

        self.entries: list[_Entry] = []
        self._shown: list[RunRecord] = []
        self._marks: list = []  # steering markers: vertical lines on the loss plot
        self._marks_key: tuple = ()
        self._set_axis_label()

    # --- which runs -------------------------------------------------------------------------

    def show_runs(self, shown: Optional[RunRecord], ticked: list[RunRecord]) -> None:
        """The ticked runs, compared, when any is ticked; otherwise the selected run alone."""
        self.set_runs(list(ticked) if ticked else ([shown] if shown is not None else []))

    def set_runs(self, records: list[RunRecord], force: bool = False) -> None:
        """Show these runs (one alone gets every curve; several are compared)."""
        if not force and [r.run_dir for r in records] == [r.run_dir for r in self._shown]:
            self.refresh()
            return
        self._clear()
        self._shown = list(records)
        if not records:
            self.title.setText("No run selected. Start one, or pick one in the run list.")
        elif len(records) == 1:
            self.title.setText(f"{records[0].name}: {records[0].label}")
            self._build_single(records[0])
        else:
            self._build_comparison(records)
        self.legend.setVisible(bool(self.entries))
        self.refresh()

    def items(self, rec: RunRecord) -> dict[str, _Curve]:
        """The curves drawn for a run ({"train loss": _Curve, "val acc": ...}); a run compared
        in a group of seeds has its group's mean curves."""
        found: dict[str, _Curve] = {}
        for entry in self.entries:
            if any(r is rec for r in entry.runs):
                found.update({c.what: c for c in entry.curves + entry.extra if isinstance(c, _Curve)})
        return found

    def _clear(self) -> None:
        for plot in (self.loss_plot, self.acc_plot):
            for item in [i for i in plot.items if isinstance(i, pg.FillBetweenItem)] + list(plot.listDataItems()):
                plot.removeItem(item)
        self.legend.blockSignals(True)
        self.legend.clear()
        self.legend.blockSignals(False)
        self.entries = []

    def _add_entry(self, entry: _Entry) -> None:
        self.entries.append(entry)
        item = QListWidgetItem(entry.label)
        pixmap = QPixmap(12, 12)
        pixmap.fill(QColor(entry.colour))
        item.setIcon(QIcon(pixmap))
        item.setToolTip(entry.label + "\n" + "\n".join(str(r.run_dir) for r in entry.runs))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked)
        self.legend.blockSignals(True)
        self.legend.addItem(item)
        self.legend.blockSignals(False)

    def _line(self, entry: _Entry, what: str, plot: str, colour, width=2, style=Qt.PenStyle.SolidLine,
              symbol=None, alpha: int = 255) -> _Curve:
        c = pg.mkColor(colour)
        c.setAlpha(alpha)
        kwargs = dict(symbol=symbol, symbolSize=6, symbolBrush=c, symbolPen=None) if symbol else {}
        target = self.loss_plot if plot == "loss" else self.acc_plot
        item = target.plot(pen=pg.mkPen(c, width=width, style=style), **kwargs)
        if symbol is None:
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
        curve = _Curve(item, entry.label, what, plot)
        if alpha == 255:
            entry.curves.append(curve)
        else:
            entry.extra.append(curve)
        return curve

    def _build_single(self, rec: RunRecord) -> None:
        """One run: each of its curves is a legend row of its own, in one colour family."""
        blue, orange, green, red, purple = PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[4]
        specs = [("train loss", "loss", blue, {}), ("val loss", "loss", orange, dict(symbol="o", width=1)),
                 ("val acc", "acc", red, dict(symbol="o")),
                 ("train acc", "acc", purple, dict(symbol="s", width=1, style=Qt.PenStyle.DashLine))]
        if rec.l2:
            specs.insert(2, ("L2 term", "loss", green, dict(symbol="t", width=1, style=Qt.PenStyle.DotLine)))
        for what, plot, colour, kw in specs:
            entry = _Entry(what, colour, [rec])
            if what == "train loss":
                self._line(entry, "train loss (raw)", plot, colour, width=1, alpha=70)
            self._line(entry, what, plot, colour, **kw)
            self._add_entry(entry)

    def _build_comparison(self, records: list[RunRecord]) -> None:
        keys = comparison.differing_keys(records)
        groups = comparison.seed_groups(records)
        n = len(groups)
        self.title.setText(f"comparing {len(records)} runs" + (f" in {n} group{'s' if n > 1 else ''}"
                                                               if n < len(records) else "") +
                           (f"; they differ in {', '.join(comparison.short_name(k) for k in keys)}" if keys else ""))
        for i, group in enumerate(groups):
            colour = PALETTE[i % len(PALETTE)]
            entry = _Entry(comparison.group_label(group, keys), colour, group)
            if len(group) == 1:
                self._line(entry, "train loss (raw)", "loss", colour, width=1, alpha=50)
            self._line(entry, "train loss", "loss", colour)
            self._line(entry, "val loss", "loss", colour, width=1, style=Qt.PenStyle.DashLine, symbol="o")
            self._line(entry, "val acc", "acc", colour, symbol="o")
            if len(group) > 1:
                for what, plot in (("train loss", "loss"), ("val acc", "acc")):
                    band = (self._line(entry, f"{what} -std", plot, colour, width=0, alpha=0),
                            self._line(entry, f"{what} +std", plot, colour, width=0, alpha=0))
                    fill = QColor(colour)
                    fill.setAlpha(45)
                    between = pg.FillBetweenItem(band[0].item, band[1].item, brush=fill)
                    (self.loss_plot if plot == "loss" else self.acc_plot).addItem(between)
                    entry.extra.append(between)
            self._add_entry(entry)

    # --- drawing ------------------------------------------------------------------------------

    @property
    def axis(self) -> str:
        return self.x_axis.currentData()

    def refresh(self) -> None:
        axis = self.axis
        for entry in self.entries:
            curves = {c.what: c for c in entry.curves + [e for e in entry.extra if isinstance(e, _Curve)]}
            if len(entry.runs) == 1:
                rec = entry.runs[0]
                self._draw_run(entry, rec, curves, axis)
            else:
                self._draw_group(entry, curves, axis)
        self._draw_marks(axis)

    def _draw_marks(self, axis: str) -> None:
        """A dashed line where a run's learning rate, momentum or weight decay was changed while it
        trained (lit_opt/steering.py), labelled with the change; redrawn only when they move."""
        runs = {id(e.runs[0]): (e.runs[0], e.colour) for e in self.entries if len(e.runs) == 1}
        if len(self._shown) == 1:  # one run's several curves: one set of markers, in grey
            runs = {k: (rec, "#555555") for k, (rec, _) in runs.items()}
        wanted = [(x, text, colour) for rec, colour in runs.values()
                  for x, text in comparison.steering_marks(rec, axis)]
        key = tuple(wanted)
        if key == self._marks_key:
            return
        for line in self._marks:
            self.loss_plot.removeItem(line)
        self._marks, self._marks_key = [], key
        for x, text, colour in wanted:
            line = pg.InfiniteLine(pos=x, angle=90, movable=False, label=text,
                                   pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine),
                                   labelOpts={"position": 0.92, "color": "#333333", "rotateAxis": (1, 0),
                                              "anchors": [(0, 0), (0, 0)]})
            self.loss_plot.addItem(line, ignoreBounds=True)
            self._marks.append(line)

    def marks(self) -> list[tuple[float, str]]:
        """The steering markers drawn now: (x, label)."""
        return [(float(line.value()), line.label.format) for line in self._marks]

    def _smoothed(self, entry: _Entry, rec: RunRecord) -> np.ndarray:
        weight = self.smoothing.value()
        smoother = entry.smoothers.get(str(rec.run_dir))
        if smoother is None or smoother.weight != weight:
            smoother = entry.smoothers[str(rec.run_dir)] = comparison.Smoother(weight)
        return smoother.extend(rec.step_loss)

    def _draw_run(self, entry: _Entry, rec: RunRecord, curves: dict, axis: str) -> None:
        if "train loss" in curves:
            x = comparison.step_axis(rec, axis)
            curves["train loss"].set(x, self._smoothed(entry, rec))
            if "train loss (raw)" in curves:
                curves["train loss (raw)"].set(x, np.array(rec.step_loss, float))  # a copy: the record grows
        for what, key in (("val loss", "val/loss"), ("val acc", "val/acc"), ("train acc", "train/acc")):
            if what in curves:
                curves[what].set(*comparison.epoch_axis(rec, axis, key))
        if "L2 term" in curves:
            key = "train/l2" if any(e.get("train/l2") is not None for e in rec.epochs) else "l2_term"
            curves["L2 term"].set(*comparison.epoch_axis(rec, axis, key))

    def _draw_group(self, entry: _Entry, curves: dict, axis: str) -> None:
        losses = [(comparison.step_axis(r, axis), self._smoothed(entry, r)) for r in entry.runs]
        parts = {"train loss": comparison.mean_band(losses),
                 "val loss": comparison.mean_band([comparison.epoch_axis(r, axis, "val/loss") for r in entry.runs]),
                 "val acc": comparison.mean_band([comparison.epoch_axis(r, axis, "val/acc") for r in entry.runs])}
        for what, (x, mean, std) in parts.items():
            curves[what].set(x, mean)
            if f"{what} -std" in curves:
                curves[f"{what} -std"].set(x, mean - std)
                curves[f"{what} +std"].set(x, mean + std)

    # --- controls ----------------------------------------------------------------------------

    def _set_axis_label(self) -> None:
        text = comparison.AXES[self.axis]
        for name, plot in (("loss", self.loss_plot), ("acc", self.acc_plot)):
            plot.setLabel("bottom", text)
            self._axes[name].integer = self.axis in ("step", "epoch")

    @Slot(int)
    def _on_axis(self, _index: int) -> None:
        self._set_axis_label()
        self.refresh()
        for plot in (self.loss_plot, self.acc_plot):
            plot.enableAutoRange()

    @Slot(float)
    def _on_smoothing(self, _value: float) -> None:
        self.refresh()

    @Slot(bool)
    def _on_log(self, on: bool) -> None:
        self.loss_plot.setLogMode(y=on)

    @Slot(QListWidgetItem)
    def _on_legend(self, item: QListWidgetItem) -> None:
        entry = self.entries[self.legend.row(item)]
        visible = item.checkState() == Qt.CheckState.Checked
        for part in entry.curves + entry.extra:
            (part.item if isinstance(part, _Curve) else part).setVisible(visible)

    def set_entry_visible(self, label: str, visible: bool) -> None:
        for row, entry in enumerate(self.entries):
            if entry.label == label:
                self.legend.item(row).setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)

    # --- crosshair readout ------------------------------------------------------------------------

    def _on_mouse(self, event) -> None:
        pos = event[0]
        for plot in (self.loss_plot, self.acc_plot):
            if plot.sceneBoundingRect().contains(pos):
                self.show_readout(plot.vb.mapSceneToView(pos).x())
                return

    def show_readout(self, x: float) -> str:
        """Move the crosshair to x and list every shown curve's value there (the last point at
        or before x); returns the readout text."""
        for line in self._cross.values():
            line.setPos(x)
            line.setVisible(True)
        parts = []
        for row, entry in enumerate(self.entries):
            if self.legend.item(row).checkState() != Qt.CheckState.Checked:
                continue
            values = []
            for curve in entry.curves:
                if not len(curve.x) or x < curve.x[0]:
                    continue
                i = int(np.searchsorted(curve.x, x, side="right")) - 1
                values.append(f"{curve.what} {curve.y[i]:.4g}")
            if values:
                parts.append(f"<span style='color:{entry.colour}'>■</span> {entry.label}: " + ", ".join(values))
        axis = comparison.AXES[self.axis]
        text = f"{axis} {x:,.4g}: " + (" · ".join(parts) if parts else "no data here")
        self.readout.setText(text)
        return text

    # --- export --------------------------------------------------------------------------------

    def _ask_export(self, kind: str) -> None:
        filters = {"png": "PNG image (*.png)", "svg": "SVG drawing (*.svg)", "csv": "CSV table (*.csv)"}
        path, _ = QFileDialog.getSaveFileName(self, "Export", f"curves.{kind}", filters[kind])
        if path:
            self.export(Path(path))

    def export(self, path: Path) -> Path:
        """Save the plots (.png, .svg) or the data of every shown curve (.csv: entry, curve, x,
        y; one row per point) to `path`, by its suffix."""
        path = Path(path)
        kind = path.suffix.lower().lstrip(".")
        if kind == "csv":
            with path.open("w", newline="") as f:
                out = csv.writer(f)
                out.writerow(["entry", "curve", comparison.AXES[self.axis], "value"])
                for entry in self.entries:
                    for curve in entry.curves + [e for e in entry.extra if isinstance(e, _Curve)]:
                        out.writerows([entry.label, curve.what, repr(float(a)), repr(float(b))]
                                      for a, b in zip(curve.x, curve.y))
            return path
        if kind == "png":
            import pyqtgraph.exporters as exporters

            exporters.ImageExporter(self.graphics.ci).export(str(path))
            return path
        if kind == "svg":
            self._export_svg(path)
            return path
        raise ValueError(f"export to .png, .svg or .csv; got {path.name!r}")

    def _export_svg(self, path: Path) -> None:
        # Qt's own SVG writer: pyqtgraph's SVGExporter fails on the paths current Qt writes
        # (pyqtgraph issue #3485: "not enough values to unpack" in correctCoordinates).
        from PySide6.QtCore import QRectF
        from PySide6.QtGui import QPainter
        from PySide6.QtSvg import QSvgGenerator

        source = self.graphics.ci.sceneBoundingRect()
        generator = QSvgGenerator()
        generator.setFileName(str(path))
        generator.setSize(source.size().toSize())
        generator.setViewBox(QRectF(0, 0, source.width(), source.height()))
        generator.setTitle("lit_opt curves")
        painter = QPainter(generator)
        try:
            self.graphics.scene().render(painter, QRectF(0, 0, source.width(), source.height()), source)
        finally:
            painter.end()
