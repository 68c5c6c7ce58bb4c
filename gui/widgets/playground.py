"""Playground: optimizers racing on 2-D toy functions (and the seminar's 1-D x^2).

Pick a function (round or ill-conditioned bowl, Rosenbrock, Rastrigin, Beale, x^2) and
a few optimizers with their learning rates; press Run (or click the plot to start from
that point) and watch their paths animate over the contours while their losses fall side
by side. Every step is `lit_opt.toy.run`, the registry's optimizers, so what moves here is
what trains the nets. The x^2 preset is the seminar's example: gd with lr 1.0 ("no
learning rate": it bounces between -5 and 5 forever) beside lr 0.1 (it shrinks by 0.8).

lit_opt.toy needs torch: `set_ready()` is called once the app's background import is done.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QSpinBox,
                               QTableWidget, QVBoxLayout, QWidget, QHeaderView, QLineEdit)

from lit_opt import optim
from lit_opt.declarations.toys import TOY_FUNCTIONS
from gui.views.curves import PALETTE

FUNCTION_NAMES = list(TOY_FUNCTIONS)
# Starting rows per function: learning rates that show each optimizer's character there.
PRESETS: dict[str, list[tuple[str, float]]] = {
    "bowl": [("sgd", 0.1), ("momentum", 0.05), ("adam", 0.3), ("rmsprop", 0.1)],
    "ill_bowl": [("sgd", 0.035), ("momentum", 0.01), ("adam", 0.3), ("rmsprop", 0.05)],
    "rosenbrock": [("sgd", 0.002), ("momentum", 0.001), ("adam", 0.1), ("rmsprop", 0.02)],
    "rastrigin": [("sgd", 0.002), ("momentum", 0.002), ("adam", 0.1), ("rmsprop", 0.05)],
    "beale": [("sgd", 0.005), ("momentum", 0.002), ("adam", 0.05), ("rmsprop", 0.01)],
    "x2": [("gd", 1.0), ("gd", 0.1)],  # the seminar: without a learning rate, then with 0.1
}
FRAMES = 90  # an animation shows the steps in about this many frames
FRAME_MS = 30


class Playground(QWidget):
    animation_finished = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._toy = None  # lit_opt.toy once torch is loaded
        self.trajectories: list = []
        self.start: Optional[tuple[float, ...]] = None
        self.shown = 0  # points of each trajectory drawn so far
        self._timer = QTimer(self)
        self._timer.setInterval(FRAME_MS)
        self._timer.timeout.connect(self._frame)

        layout = QHBoxLayout(self)
        side = QVBoxLayout()
        layout.addLayout(side)
        form = QFormLayout()
        side.addLayout(form)
        self.function = QComboBox()
        self.function.setObjectName("function")
        self.function.addItems(FUNCTION_NAMES)
        form.addRow("function", self.function)
        self.steps = QSpinBox()
        self.steps.setRange(1, 5000)
        self.steps.setValue(150)
        form.addRow("steps", self.steps)
        self.description = QLabel("")
        self.description.setWordWrap(True)
        side.addWidget(self.description)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["optimizer", "lr"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumWidth(230)
        side.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.add_button, self.remove_button = QPushButton("Add"), QPushButton("Remove")
        self.add_button.clicked.connect(self._on_add)
        self.remove_button.clicked.connect(self._on_remove)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        side.addLayout(row)
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("run_playground")
        self.run_button.clicked.connect(self.run)
        side.addWidget(self.run_button)
        self.seminar_button = QPushButton("Seminar: x² with and without a learning rate")
        self.seminar_button.clicked.connect(self._on_seminar)
        side.addWidget(self.seminar_button)
        self.message = QLabel("Loading PyTorch…")
        self.message.setWordWrap(True)
        side.addWidget(self.message)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        layout.addWidget(self.graphics, 1)
        self.plot = self.graphics.addPlot(row=0, col=0)
        self.plot.setTitle("paths (click to choose the start)")
        self.plot.setMenuEnabled(False)
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setColorMap(pg.colormap.get("viridis"))
        self.heat.setOpacity(0.55)
        self.plot.addItem(self.heat)
        self.contours: list[pg.IsocurveItem] = []
        self.curve_1d = self.plot.plot(pen=pg.mkPen("#888888", width=2))
        self.minimum = pg.ScatterPlotItem(symbol="star", size=18, brush="r", pen=None)
        self.start_marker = pg.ScatterPlotItem(symbol="o", size=11, brush=None, pen=pg.mkPen("k", width=2))
        self.plot.addItem(self.minimum)
        self.plot.addItem(self.start_marker)
        self.loss_plot = self.graphics.addPlot(row=0, col=1)
        self.loss_plot.setTitle("loss per step")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLogMode(y=True)
        self.loss_legend = self.loss_plot.addLegend(offset=(-10, 10))
        self.graphics.ci.layout.setColumnStretchFactor(0, 3)
        self.graphics.ci.layout.setColumnStretchFactor(1, 2)
        self.path_items: list[pg.PlotDataItem] = []
        self.loss_items: list[pg.PlotDataItem] = []
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        self.function.currentTextChanged.connect(self._on_function)
        self.run_button.setEnabled(False)
        self._set_rows(PRESETS["bowl"])

    # --- set-up ------------------------------------------------------------------------------

    def set_ready(self) -> None:
        """torch is imported: draw the function and run the preset."""
        import lit_opt.toy as toy

        self._toy = toy
        self.run_button.setEnabled(True)
        self.message.setText("")
        self._on_function(self.function.currentText())

    def _set_rows(self, rows: list[tuple[str, float]]) -> None:
        self.table.setRowCount(0)
        for name, lr in rows:
            self._add_row(name, lr)

    def _add_row(self, name: str, lr: float) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        combo = QComboBox()
        # Optimizers made for weight matrices (muon) have nothing to act on in a 2-D point.
        combo.addItems([n for n in optim.names()
                        if n != "sam" and not optim.info(n).needs_matrices] + ["sam"])
        combo.setCurrentText(name)
        self.table.setCellWidget(r, 0, combo)
        edit = QLineEdit(f"{lr:g}")
        edit.setToolTip(optim.info(name).hyperparameter("lr").help or "learning rate")
        self.table.setCellWidget(r, 1, edit)

    def rows(self) -> list[tuple[str, str]]:
        return [(self.table.cellWidget(r, 0).currentText(), self.table.cellWidget(r, 1).text())
                for r in range(self.table.rowCount())]

    def set_optimizers(self, rows: list[tuple[str, float]]) -> None:
        self._set_rows(rows)

    @Slot()
    def _on_add(self) -> None:
        self._add_row("adam", 0.01)

    @Slot()
    def _on_remove(self) -> None:
        r = self.table.currentRow()
        self.table.removeRow(r if r >= 0 else self.table.rowCount() - 1)

    @Slot()
    def _on_seminar(self) -> None:
        self.function.setCurrentText("x2")
        self._on_function("x2")

    @Slot(str)
    def _on_function(self, name: str) -> None:
        self._set_rows(PRESETS[name])
        self.start = None
        if self._toy is None:
            return
        spec = self._toy.function(name)
        self.description.setText(spec.description)
        self._draw_function(spec)
        self.run()

    def _draw_function(self, spec) -> None:
        import torch

        for iso in self.contours:  # children of the heat map, not of the plot
            scene = iso.scene()
            iso.setParentItem(None)
            if scene is not None:
                scene.removeItem(iso)
        self.contours = []
        (x0, x1) = spec.window[0]
        fmin = spec.f(torch.tensor(spec.minimum, dtype=torch.float64)).item()
        if spec.dim == 1:
            xs = torch.linspace(x0, x1, 400, dtype=torch.float64)
            ys = spec.f(xs[:, None])
            self.heat.clear()
            self.heat.setVisible(False)
            self.curve_1d.setData(xs.numpy(), ys.numpy())
            self.plot.setLabel("left", "f(x)")
            self.plot.setAspectLocked(False)
            self.plot.setRange(xRange=(x0, x1), yRange=(-0.05 * ys.max().item(), 1.05 * ys.max().item()),
                               padding=0)
            self.minimum.setData([spec.minimum[0]], [fmin])
        else:
            (y0, y1) = spec.window[1]
            n = 240
            gx, gy = torch.meshgrid(torch.linspace(x0, x1, n, dtype=torch.float64),
                                    torch.linspace(y0, y1, n, dtype=torch.float64), indexing="xy")
            z = torch.log1p(spec.f(torch.stack([gx, gy], -1)) - fmin).numpy()  # rows: y
            self.curve_1d.setData([], [])
            self.heat.setVisible(True)
            self.heat.setImage(z, autoLevels=True)
            self.heat.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
            for level in np.linspace(z.min(), z.max(), 14)[1:-1]:
                iso = pg.IsocurveItem(data=z, level=float(level), pen=pg.mkPen("#33333380", width=1),
                                      axisOrder="row-major")
                iso.setParentItem(self.heat)  # image pixel coordinates
                self.contours.append(iso)
            self.plot.setLabel("left", "y")
            self.plot.setAspectLocked(True)
            self.plot.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)
            self.minimum.setData([spec.minimum[0]], [spec.minimum[1]])
        self.plot.setLabel("bottom", "x")
        self.plot.vb.disableAutoRange()

    # --- running and animating -------------------------------------------------------------

    @Slot()
    def run(self) -> None:
        """Compute every selected optimizer's path, then animate them."""
        if self._toy is None:
            return
        toy = self._toy
        spec = toy.function(self.function.currentText())
        start = self.start or spec.start
        trajectories, problems = [], []
        for name, lr in self.rows():
            try:
                trajectories.append(toy.run(spec, name, steps=self.steps.value(), start=start, lr=float(lr)))
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        self.message.setText("\n".join(problems))
        self.trajectories = trajectories
        self._make_items(spec.dim)
        self.start_marker.setData([start[0]], [start[1] if spec.dim == 2 else self._f(spec, start)])
        self.shown = 0
        if self.isVisible():
            self._timer.start()
        else:
            # A hidden tab (the preset the window draws at start-up): the whole paths at once.
            # Animating it there cost a third of the GUI thread while a run trained beside it.
            self.shown = max((len(t.points) for t in trajectories), default=0)
            self._frame()

    @staticmethod
    def _f(spec, point) -> float:
        import torch

        return spec.f(torch.tensor(point, dtype=torch.float64)).item()

    def _make_items(self, dim: int) -> None:
        for item in self.path_items:
            self.plot.removeItem(item)
        self.loss_legend.clear()
        for item in self.loss_items:
            self.loss_plot.removeItem(item)
        self.path_items, self.loss_items = [], []
        diverged = []
        for i, traj in enumerate(self.trajectories):
            colour = PALETTE[i % len(PALETTE)]
            self.path_items.append(self.plot.plot(pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=4,
                                                  symbolBrush=colour, symbolPen=None, connect="finite"))
            label = traj.label
            if not np.isfinite(traj.losses).all():
                first = int(np.argmin(np.isfinite(traj.losses)))
                label += f" — diverged at step {first}"
                diverged.append(label)
            self.loss_items.append(self.loss_plot.plot(pen=pg.mkPen(colour, width=2), name=label,
                                                       connect="finite"))
        if diverged:
            self.message.setText("\n".join([self.message.text(), *diverged]).strip())

    @Slot()
    def _frame(self) -> None:
        total = max((len(t.points) for t in self.trajectories), default=0)
        self.shown = min(total, self.shown + max(1, total // FRAMES))
        for traj, path, loss in zip(self.trajectories, self.path_items, self.loss_items):
            k = min(self.shown, len(traj.points))
            pts, losses = traj.points[:k], traj.losses[:k]
            ok = np.isfinite(pts).all(axis=1) & (np.abs(pts) < 1e6).all(axis=1)
            if traj.points.shape[1] == 1:
                path.setData(np.where(ok, pts[:, 0], np.nan), np.where(ok, losses, np.nan))
            else:
                path.setData(np.where(ok, pts[:, 0], np.nan), np.where(ok, pts[:, 1], np.nan))
            positive = np.where(np.isfinite(losses) & (losses > 0), losses, np.nan)
            loss.setData(np.arange(k, dtype=float), positive)
        if self.shown >= total:
            self._timer.stop()
            self.animation_finished.emit()

    def is_animating(self) -> bool:
        return self._timer.isActive()

    def _on_click(self, event) -> None:
        if self._toy is None or event.button() != Qt.MouseButton.LeftButton:
            return
        pos = event.scenePos()
        if not self.plot.vb.sceneBoundingRect().contains(pos):
            return
        point = self.plot.vb.mapSceneToView(pos)
        self.choose_start(point.x(), point.y())

    def choose_start(self, x: float, y: float) -> None:
        """Start every optimizer from (x, y) (1-D functions: from x) and run again."""
        spec = self._toy.function(self.function.currentText())
        lo = [w[0] for w in spec.window]
        hi = [w[1] for w in spec.window]
        point = (x,) if spec.dim == 1 else (x, y)
        self.start = tuple(float(min(max(v, a), b)) for v, a, b in zip(point, lo, hi))
        self.run()
