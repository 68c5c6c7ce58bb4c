"""Landscape: loss and accuracy along a line or over a plane in weight space, for the selected
run or two ticked runs (lit_opt/landscape.py computes it; this view asks and draws).

    line from init   the selected run's initial weights (RUN/init.pt) to its best checkpoint
    line A -> B      the first two ticked runs' best checkpoints (same net)
    plane            filter-normalized directions around the selected run's best checkpoint

The computation runs in its own QThread (a parent-less worker, plain data back through
signals), on fixed seeded subsets named under the plot. Nothing is live: `refresh` does
nothing, a result stays until the next Compute.

A RunView: the window makes it a tab (gui/views/__init__.py).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QThread, Qt, Signal, Slot
from gui.views import RunView
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QStackedWidget,
                               QVBoxLayout, QWidget)

MODES = (("line from init", "line from the selected run's initial weights to its best checkpoint"),
         ("line A -> B", "line between the first two ticked runs' best checkpoints"),
         ("plane", "plane of filter-normalized directions around the selected run's best checkpoint"))


class LandscapeWorker(QObject):
    """One `lit_opt.landscape.landscape(**kwargs)` call in its own thread; emits `finished(result)`
    or `failed(message)`, then `done()`."""

    finished = Signal(object)
    failed = Signal(str)
    done = Signal()

    def __init__(self, kwargs: dict):
        super().__init__()  # no parent: it is moved to its own thread
        self.kwargs = kwargs

    @Slot()
    def run(self) -> None:
        try:
            from lit_opt.errors import LitOptError
            from lit_opt.landscape import landscape

            try:
                self.finished.emit(landscape(**self.kwargs))
            except LitOptError as exc:  # a refused checkpoint or setting: its message as it is
                self.failed.emit(str(exc))
        except Exception as exc:  # anything else: shown, never a crash of the window
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        finally:
            self.done.emit()


class LandscapeView(RunView):
    tab_title, order = "Landscape", 80
    series: tuple[str, ...] = ()

    computed = Signal(object)  # the result drawn (or {"error": message}), for tests and programs

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.mode = QComboBox()
        for name, tip in MODES:
            self.mode.addItem(name)
            self.mode.setItemData(self.mode.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.steps = QSpinBox()
        self.steps.setRange(2, 101)
        self.steps.setValue(31)
        self.steps.setToolTip("points along the line, or along each side of the plane")
        self.samples = QSpinBox()
        self.samples.setRange(1, 60000)
        self.samples.setSingleStep(1000)
        self.samples.setValue(5000)
        self.samples.setToolTip("training images and test images in the fixed, seeded subsets")
        self.compute_button = QPushButton("Compute")
        for label, widget in (("", self.mode), ("points", self.steps), ("images", self.samples)):
            if label:
                bar.addWidget(QLabel(label))
            bar.addWidget(widget)
        bar.addWidget(self.compute_button)
        bar.addStretch(1)
        layout.addLayout(bar)
        self.info = QLabel("No run selected.")
        self.info.setWordWrap(True)
        layout.addWidget(self.info)

        self.stack = QStackedWidget()
        self.line_plot = pg.PlotWidget(background="w")
        self.line_plot.setLabel("bottom", "alpha")
        self.line_plot.setLabel("left", "cross-entropy")
        self.line_plot.showGrid(x=True, y=True, alpha=0.25)
        self.line_plot.addLegend()
        self.train_curve = self.line_plot.plot(pen=pg.mkPen("#1f77b4", width=2), name="train")
        self.test_curve = self.line_plot.plot(pen=pg.mkPen("#d62728", width=2), name="test")
        self.plane_plot = pg.PlotWidget(background="w")
        self.plane_plot.setLabel("bottom", "direction 1")
        self.plane_plot.setLabel("left", "direction 2")
        self.plane_plot.setAspectLocked(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plane_plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), label="log10 training loss",
                                        interactive=False)
        self.colorbar.setImageItem(self.image, insert_in=self.plane_plot.getPlotItem())
        self.isocurves: list = []
        self.stack.addWidget(self.line_plot)
        self.stack.addWidget(self.plane_plot)
        layout.addWidget(self.stack, 1)

        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.compute_button.clicked.connect(self.compute)
        self._shown, self._ticked = None, []
        self._thread: Optional[QThread] = None
        self._worker: Optional[LandscapeWorker] = None
        self.result: Optional[dict] = None
        self._done_text: Optional[str] = None  # the last result's or refusal's text, kept until the choice changes
        self._update_controls()

    # --- RunView's interface ----------------------------------------------------------------

    def show_runs(self, shown, ticked: list) -> None:
        if shown is not self._shown or list(ticked) != self._ticked:
            self._done_text = None
        self._shown, self._ticked = shown, list(ticked)
        self._update_controls()

    def refresh(self) -> None:
        """Nothing live: a landscape is computed on request."""

    # --- asking ---------------------------------------------------------------------------------

    def _mode_changed(self) -> None:
        self.steps.setValue(25 if self.mode.currentText() == "plane" else 31)
        self._done_text = None
        self._update_controls()

    def request(self) -> tuple[Optional[dict], str]:
        """(keyword arguments for lit_opt.landscape.landscape, or None, and why not)."""
        mode = self.mode.currentText()
        common = {"steps": self.steps.value(), "train_samples": self.samples.value(),
                  "test_samples": self.samples.value()}
        if mode == "line A -> B":
            runs = [r for r in self._ticked if r.best_checkpoint() is not None][:2]
            if len(runs) < 2:
                return None, "Tick two runs with checkpoints (of the same net) for a line from one to the other."
            return {"ckpt_path": str(runs[0].best_checkpoint()), "to": str(runs[1].best_checkpoint()),
                    **common}, f"{runs[0].name} -> {runs[1].name}"
        rec = self._shown
        if rec is None or rec.best_checkpoint() is None:
            return None, "Select a run with a checkpoint."
        if mode == "plane":
            return {"ckpt_path": str(rec.best_checkpoint()), "plane": True, **common}, f"plane around {rec.name}"
        return {"ckpt_path": str(rec.best_checkpoint()), **common}, f"{rec.name}: from its initial weights"

    def _update_controls(self) -> None:
        kwargs, text = self.request()
        busy = self._thread is not None
        self.compute_button.setEnabled(kwargs is not None and not busy)
        if not busy:
            self.info.setText(self._done_text or (text if kwargs is None else f"{text}. Press Compute."))

    @Slot()
    def compute(self) -> None:
        kwargs, text = self.request()
        if kwargs is None or self._thread is not None:
            return
        self.info.setText(f"Computing {text} ...")
        self._thread = QThread()
        self._worker = LandscapeWorker(kwargs)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.finished.connect(self._show_result)
        self._worker.failed.connect(self._show_error)
        self._worker.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._thread_finished)
        self._update_controls()
        self._thread.start()

    @Slot()
    def _thread_finished(self) -> None:
        if self._thread is not None:
            self._thread.wait()
        self._thread = self._worker = None
        self._update_controls()

    def wait(self, timeout_ms: Optional[int] = None) -> None:
        """Block until a running computation ends (closing the app, tests)."""
        if self._thread is not None:
            self._thread.wait() if timeout_ms is None else self._thread.wait(timeout_ms)

    # --- drawing ----------------------------------------------------------------------------------

    @Slot(str)
    def _show_error(self, message: str) -> None:
        self.result, self._done_text = None, message
        self.info.setText(message)
        self.computed.emit({"error": message})

    @Slot(object)
    def _show_result(self, result: dict) -> None:
        self.result = result
        about, rows = result["about"], result["rows"]
        if about["mode"] == "plane":
            self._draw_plane(rows)
        else:
            self._draw_line(rows)
        best = min(rows, key=lambda r: r["train_loss"])
        where = ", ".join(f"{k} {best[k]:.3g}" for k in ("alpha", "beta") if k in best)
        ends = (f"alpha 0: {about['from']}; alpha 1: {about['to']}. " if about["mode"] == "line" else
                f"{about['directions']}. ")
        self._done_text = (f"{ends}Lowest training loss {best['train_loss']:.4g} at {where}. "
                            f"{about['points']} points in {about['seconds']:.1f} s. Train: {about['train_subset']}; "
                            f"test: {about['test_subset']}. {about['note']}.")
        self.info.setText(self._done_text)
        self.computed.emit(result)

    def _draw_line(self, rows: list[dict]) -> None:
        self.stack.setCurrentWidget(self.line_plot)
        alpha = np.array([r["alpha"] for r in rows])
        self.train_curve.setData(alpha, np.array([r["train_loss"] for r in rows]))
        self.test_curve.setData(alpha, np.array([r["test_loss"] for r in rows]))

    def _draw_plane(self, rows: list[dict]) -> None:
        self.stack.setCurrentWidget(self.plane_plot)
        coords = sorted({r["alpha"] for r in rows})
        k = len(coords)
        loss = np.log10(np.clip(np.array([r["train_loss"] for r in rows], dtype=np.float64), 1e-12, None))
        grid = loss.reshape(k, k)  # rows: direction 2 (beta), columns: direction 1 (alpha)
        lo, hi = coords[0], coords[-1]
        step = (hi - lo) / (k - 1)
        self.image.setImage(grid, autoLevels=False)
        self.image.setRect(lo - step / 2, lo - step / 2, hi - lo + step, hi - lo + step)
        self.colorbar.setLevels((float(grid.min()), float(grid.max())))
        for item in self.isocurves:  # contours: 8 levels between the lowest and highest loss
            item.setParentItem(None)
            if item.scene() is not None:
                item.scene().removeItem(item)
        self.isocurves = []
        for level in np.linspace(grid.min(), grid.max(), 10)[1:-1]:
            # In the image's pixel coordinates: x along the first axis (alpha), and a value at
            # index i sits at the pixel's centre, i + 0.5.
            curve = pg.IsocurveItem(data=grid.T, level=float(level), pen=pg.mkPen("w", width=1))
            curve.setParentItem(self.image)
            curve.setPos(0.5, 0.5)
            self.isocurves.append(curve)
