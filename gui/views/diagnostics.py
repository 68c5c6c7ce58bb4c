"""Diagnostics: inside the optimizer, layer by layer, for the selected run.

Each plot answers one question a student asks (lit_opt/diagnostics/ measures them):
- "Is the learning rate right for each layer?": the update/weight ratio ||delta w|| / ||w|| of
  every layer on a log axis, with the 1e-3 guide line (Karpathy's rule of thumb: far above,
  the step thrashes the layer; far below, it barely moves);
- "Which layers learn; does a gradient vanish or explode?": the gradient norm per layer;
- "Do the weights grow or shrink (weight decay, L2)?": the weight norm per layer;
- "What did the optimizer use?": the learning rate and momentum (or Adam's betas) per step,
  a schedule and any steering as applied;
- "Is the step near the edge of stability?": the sharpness (top Hessian eigenvalue of the
  training objective, when `--diagnostics.sharpness_every` is set) against the optimizer's
  stability threshold, labelled with its formula (2/lr for gd and sgd, Cohen et al. 2021);
- "How are the weights, gradients and step sizes spread, and how does that change?": a
  histogram heat map (bins x step, as TensorBoard's distributions) of one layer; the step
  size |delta w| / |g| per parameter (log10) is the per-parameter learning rate an adaptive
  method chose (one value for SGD: its lr).
Layers are named by what they are ("dense 784->100", "conv 6@5x5"), one colour each.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui.records import optimizer_values
from gui.views import RunView
from gui.views.graphics import TimedGraphics
from gui.views.curves import PALETTE

LAYER_PLOTS = (  # series, plot title (its question, short: a title sets its column's minimum width), y label
    ("train/update_ratio", "lr right per layer? ||dw|| / ||w|| (guide 1e-3)", "||dw|| / ||w||"),
    ("train/grad_norm", "which layers learn? gradient norm", "||g||"),
    ("train/weight_norm", "weights growing or shrinking? weight norm", "||w||"),
)


class LogAxis(pg.AxisItem):
    """A log axis labelled at 1, 2 and 5 times each power of ten only: pyqtgraph labels every
    minor tick, and on a plot this small they overlap."""

    def tickStrings(self, values, scale, spacing):
        strings = super().tickStrings(values, scale, spacing)
        if not self.logMode:
            return strings
        keep = []
        for v, text in zip(values, strings):
            mantissa = round(10 ** (v - np.floor(v)), 3)
            keep.append(text if mantissa in (1.0, 2.0, 5.0) else "")
        return keep
HISTOGRAMS = {"hist/weights": "weights", "hist/grads": "gradients", "hist/step_size": "log10 step size |dw|/|g|"}
GRID = 64  # rows of the heat map: every histogram re-binned onto one y grid


def heat_map(rows: list, layer: int, grid: int = GRID) -> Optional[tuple[np.ndarray, float, float]]:
    """(image (steps x grid), y low, y high) of one layer's histograms over time: each step's
    bins (between its own min and max) spread onto one common grid by the overlap of each bin
    with each cell (the counts taken as uniform within a bin), as fractions of the layer's
    parameters, so a colour means the same share at every step. None without data."""
    hists = [np.asarray(h[layer], float) for _, h in rows if h and len(h) > layer]
    hists = [h for h in hists if np.isfinite(h[:2]).all() and h[4:].sum() > 0]
    if not hists:
        return None
    lo = min(h[0] for h in hists)
    hi = max(h[1] for h in hists)
    if hi <= lo:
        hi = lo + 1e-12
    cells = np.linspace(lo, hi, grid + 1)
    image = np.zeros((len(hists), grid))
    for i, h in enumerate(hists):
        counts = h[4:]
        edges = np.linspace(h[0], max(h[1], h[0] + 1e-12), len(counts) + 1)
        cdf = np.concatenate([[0.0], np.cumsum(counts)]) / counts.sum()
        image[i] = np.diff(np.interp(cells, edges, cdf))
    return image, lo, hi


class DiagnosticsView(RunView):
    tab_title, order = "Diagnostics", 40
    series = ("train/update_ratio", "train/grad_norm", "train/weight_norm", "train/lr", "train/momentum",
              "train/beta2", "train/sharpness", "train/stability_threshold", *HISTOGRAMS)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.info = QLabel("No run selected.")
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        self.graphics = TimedGraphics()
        self.graphics.setBackground("w")
        layout.addWidget(self.graphics, 1)
        self.plots: dict[str, pg.PlotItem] = {}
        for i, (name, title, ylabel) in enumerate(LAYER_PLOTS):
            plot = self.graphics.addPlot(row=i // 2, col=i % 2, axisItems={"left": LogAxis("left")})
            plot.setTitle(title, size="9pt")
            plot.setLabel("left", ylabel)
            plot.setLabel("bottom", "batch")
            # ratios and gradient norms span decades: log axes; weight norms move by a few times: linear
            plot.setLogMode(y=name != "train/weight_norm")
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.getAxis("left").enableAutoSIPrefix(False)
            self.plots[name] = plot
        self.guide = pg.InfiniteLine(pos=-3, angle=0, movable=False,  # log axis: log10(1e-3)
                                     pen=pg.mkPen("#444444", width=1, style=pg.QtCore.Qt.PenStyle.DashLine),
                                     label="1e-3", labelOpts={"position": 0.03, "color": "#444444"})
        self.plots["train/update_ratio"].addItem(self.guide, ignoreBounds=True)
        self.legend = QLabel("")  # the layers' colours, the same in every plot
        self.legend.setWordWrap(True)
        layout.insertWidget(1, self.legend)
        self.opt_plot = self.graphics.addPlot(row=1, col=1, axisItems={"left": LogAxis("left")})
        self.opt_plot.setTitle("what it used: lr (blue), momentum, beta2 (red)", size="9pt")
        self.opt_plot.setLabel("bottom", "batch")
        self.opt_plot.setLabel("left", "lr")
        self.opt_plot.setLogMode(y=True)
        self.opt_plot.showGrid(x=True, y=True, alpha=0.25)
        self.opt_plot.getAxis("left").enableAutoSIPrefix(False)
        self.lr_curve = self.opt_plot.plot(pen=pg.mkPen("#1f77b4", width=2), name="lr")
        self.momentum_box = pg.ViewBox()  # momentum on its own linear axis at the right
        self.opt_plot.showAxis("right")
        self.opt_plot.scene().addItem(self.momentum_box)
        self.opt_plot.getAxis("right").linkToView(self.momentum_box)
        self.opt_plot.getAxis("right").setLabel("momentum")
        self.opt_plot.getAxis("right").setLogMode(False)  # the plot's log mode is the lr's, not this axis's
        self.momentum_box.setXLink(self.opt_plot)
        self.momentum_box.setYRange(0.0, 1.0, padding=0.02)  # momentum and betas live in [0, 1)
        self.momentum_box.enableAutoRange(axis=pg.ViewBox.YAxis, enable=False)
        self.opt_plot.getAxis("right").enableAutoSIPrefix(False)
        self.opt_plot.vb.sigResized.connect(lambda: self.momentum_box.setGeometry(self.opt_plot.vb.sceneBoundingRect()))
        self.momentum_curve = pg.PlotDataItem(pen=pg.mkPen("#d62728", width=2))
        self.beta2_curve = pg.PlotDataItem(pen=pg.mkPen("#d62728", width=1, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.momentum_box.addItem(self.momentum_curve)
        self.momentum_box.addItem(self.beta2_curve)
        self.sharp_plot = self.graphics.addPlot(row=2, col=0, colspan=2)
        self.sharp_plot.setLabel("bottom", "batch")
        self.sharp_plot.setLabel("left", "lambda_max")
        self.sharp_plot.showGrid(x=True, y=True, alpha=0.25)
        self.sharp_plot.getAxis("left").enableAutoSIPrefix(False)
        self.sharp_legend = self.sharp_plot.addLegend(offset=(10, 10), labelTextSize="8pt")
        self.sharp_curve = self.sharp_plot.plot(pen=pg.mkPen("#9467bd", width=2), symbol="o", symbolSize=4,
                                                symbolBrush="#9467bd", symbolPen=None, name="sharpness")
        dashed = pg.mkPen("#333333", width=1, style=pg.QtCore.Qt.PenStyle.DashLine)
        self.threshold_curve = self.sharp_plot.plot(pen=dashed, name="stability threshold")
        self.graphics.ci.removeItem(self.sharp_plot)  # shown once a run has sharpness values
        self._sharp_shown = False

        # the histogram heat map, with what and which layer to show
        controls = QWidget()
        row = QHBoxLayout(controls)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Distribution of"))
        self.hist_kind = QComboBox()
        for key, text in HISTOGRAMS.items():
            self.hist_kind.addItem(text, key)
        self.hist_layer = QComboBox()
        row.addWidget(self.hist_kind)
        row.addWidget(QLabel("in layer"))
        row.addWidget(self.hist_layer)
        row.addStretch(1)
        layout.addWidget(controls)
        self.hist_graphics = pg.GraphicsLayoutWidget()
        self.hist_graphics.setBackground("w")
        self.hist_graphics.setMinimumHeight(170)
        self.hist_graphics.setMaximumHeight(260)
        layout.addWidget(self.hist_graphics, 0)
        self.hist_plot = self.hist_graphics.addPlot()
        self.hist_plot.setLabel("bottom", "batch")
        self.hist_plot.getAxis("left").enableAutoSIPrefix(False)
        self.hist_image = pg.ImageItem()
        self.hist_image.setColorMap(pg.colormap.get("viridis"))
        self.hist_plot.addItem(self.hist_image)
        self.hist_kind.currentIndexChanged.connect(self._redraw_histogram)
        self.hist_layer.currentIndexChanged.connect(self._redraw_histogram)

        self._rec = None
        self._layers: list[str] = []
        self.curves: dict[str, list[pg.PlotDataItem]] = {name: [] for name, _, _ in LAYER_PLOTS}
        self._drawn = -1  # the record's size when last drawn
        self.heat: Optional[tuple[np.ndarray, float, float]] = None

    # --- which run ----------------------------------------------------------------------------

    def show_runs(self, shown, ticked: list) -> None:
        if shown is not self._rec:
            self._rec, self._drawn = shown, -1
            self._set_layers([])
        self.refresh()

    def _set_layers(self, layers: list[str]) -> None:
        self.legend.setText("layers: " + "&nbsp;&nbsp; ".join(
            f'<span style="color:{PALETTE[i % len(PALETTE)]}">&#9632; {layer}</span>' for i, layer in enumerate(layers)))
        for name, items in self.curves.items():
            for item in items:
                self.plots[name].removeItem(item)
            self.curves[name] = []
        self._layers = list(layers)
        for name in self.curves:
            for i, layer in enumerate(layers):
                item = self.plots[name].plot(pen=pg.mkPen(PALETTE[i % len(PALETTE)], width=1))
                item.setDownsampling(auto=True, method="peak")
                item.setClipToView(True)
                self.curves[name].append(item)
        self.hist_layer.blockSignals(True)
        self.hist_layer.clear()
        self.hist_layer.addItems(layers)
        self.hist_layer.blockSignals(False)

    # --- drawing --------------------------------------------------------------------------------

    def _size(self, rec) -> int:
        return sum(len(xs) for xs, _ in rec.steps.values()) + sum(len(v) for v in rec.histograms.values())

    def refresh(self) -> None:
        rec = self._rec
        if rec is None:
            self.info.setText("No run selected.")
            return
        size = self._size(rec)
        if size == self._drawn:
            return
        self._drawn = size
        layers = next((rec.elements[n] for n in ("train/update_ratio", "train/grad_norm", "train/weight_norm")
                       if rec.elements.get(n)), [])
        if layers != self._layers:
            self._set_layers(layers)
        for name, items in self.curves.items():
            x, y = rec.step_series(name)
            for i, item in enumerate(items):
                if not len(x) or y.ndim != 2 or y.shape[1] <= i:
                    item.setData([], [])
                    continue
                ok = np.isfinite(y[:, i]) & (y[:, i] > 0)  # log axes: zero and NaN are not drawn
                item.setData(x[ok], y[ok, i])
        x, lr = rec.step_series("train/lr")
        ok = np.isfinite(lr) & (lr > 0)
        self.lr_curve.setData(x[ok], lr[ok])
        self.momentum_box.setGeometry(self.opt_plot.vb.sceneBoundingRect())  # before its first resize
        self.momentum_curve.setData(*rec.step_series("train/momentum"))
        self.beta2_curve.setData(*rec.step_series("train/beta2"))
        self._draw_sharpness(rec)
        self._redraw_histogram()
        self.info.setText(self._summary(rec))

    def _draw_sharpness(self, rec) -> None:
        x, sharp = rec.step_series("train/sharpness")
        if bool(len(x)) != self._sharp_shown:  # its row only when there is something to draw
            if len(x):
                self.graphics.addItem(self.sharp_plot, row=2, col=0, colspan=2)
            else:
                self.graphics.ci.removeItem(self.sharp_plot)
            self._sharp_shown = bool(len(x))
        self.sharp_curve.setData(x, sharp)
        self.threshold_curve.setData(*rec.step_series("train/stability_threshold"))
        if not len(x):
            self.sharp_plot.setTitle("is the step at the edge of stability? (sharpness is off: "
                                     "--diagnostics.sharpness_every N)", size="9pt")
            return
        self.sharp_plot.setTitle(f"is the step at the edge of stability? sharpness {sharp[-1]:.3g} at batch "
                                 f"{int(x[-1])}; {self.threshold_text(rec)}", size="9pt")

    @staticmethod
    def threshold_text(rec) -> str:
        """The optimizer's stability threshold as a formula, from the run's settings."""
        from lit_opt.hessian import stability_threshold  # torch is loaded: a run with sharpness exists

        model = rec.config.get("model") or {}
        values = optimizer_values(model)
        try:
            _, text = stability_threshold(model.get("optimizer") or "sgd", float(values.get("lr") or 0.0),
                                          float(values.get("momentum") or 0.0), bool(values.get("nesterov")))
        except Exception:  # noqa: BLE001 - a label, never an error
            return ""
        return f"threshold: {text}"

    def _summary(self, rec) -> str:
        x, ratio = rec.step_series("train/update_ratio")
        if not len(x):
            return (f"{rec.name}: no per-layer diagnostics recorded (runs from before they existed, or "
                    f"--diagnostics.every 0).")
        last = ", ".join(f"{name} {v:.2g}" for name, v in zip(self._layers, ratio[-1]))
        return f"{rec.name}: update/weight ratio at batch {int(x[-1])}: {last}"

    def _redraw_histogram(self, *_args) -> None:
        rec = self._rec
        key = self.hist_kind.currentData()
        layer = self.hist_layer.currentIndex()
        rows = rec.histograms.get(key, []) if rec is not None else []
        self.heat = heat_map(rows, layer) if layer >= 0 else None
        if self.heat is None:
            self.hist_image.clear()
            self.hist_plot.setTitle("no histograms recorded yet (every --diagnostics.histograms_every steps)",
                                    size="9pt")
            return
        image, lo, hi = self.heat
        xs = [x for x, _ in rows]
        x0 = xs[0]
        width = (xs[-1] - xs[0]) / max(len(xs) - 1, 1) if len(xs) > 1 else 1.0
        # square root of the share: the tails stay visible beside a peak holding most parameters
        self.hist_image.setImage(np.sqrt(image), autoLevels=False, levels=(0, max(float(np.sqrt(image).max()), 1e-12)))
        # each snapshot's column runs from its batch to the next one's
        self.hist_image.setRect(pg.QtCore.QRectF(x0, lo, width * len(xs), hi - lo))
        self.hist_plot.setLabel("left", self.hist_kind.currentText())
        self.hist_plot.setTitle(f"{self.hist_kind.currentText()} in {self.hist_layer.currentText()}: share of "
                                f"its parameters (colour: square root), {len(xs)} snapshots", size="9pt")
