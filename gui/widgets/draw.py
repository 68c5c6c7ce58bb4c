"""The "Draw" tab: draw a digit (or drop a picture), see what the net sees and what it thinks.

    tab = DrawTab()
    tab.set_checkpoints([Path("checkpoints/RUN/best.ckpt"), ...])   # the app's run list feeds it

- a canvas to draw on with the mouse (thick round brush, Clear); dropping an image file
  on it classifies that file;
- the checkpoint chooser: the runs' checkpoints given by `set_checkpoints`, and any file
  through "Open checkpoint...";
- the picture the net is given (28x28 for MNIST / Fashion-MNIST, prepared by
  `lit_opt.preprocess`), beside the canvas;
- a bar chart of the class probabilities (`lit_opt.inference.classify`), redrawn while
  drawing, at most every THROTTLE_MS, and once more when the stroke ends;
- below them, every layer's activations for the same picture (gui/widgets/activations.py:
  conv feature maps as tiles, dense layers as strips), from the same forward pass
  (`lit_opt.activations.classify_with_activations`), so they update as the chart does.

Loading a checkpoint imports torch and reads the file in a background thread, so the
window never freezes. Each update is one forward pass that gives the probabilities and
the activations together. Every pass (with the preprocessing) runs in a worker thread,
one at a time, and only drawing its result takes the GUI thread: a pass is ~1 ms on an
idle CPU, but a conv net's can take 50-100 ms when the CPU is busy (a run training in the
app, torch's threads waiting on each other), and the pen and the window must not stall.
While a stroke goes on, a pass asked for while one is in flight becomes one more pass
when it ends. The pass at a stroke's end (and on Clear, a dropped file, a new model) is
for the picture as it is then; it makes any pass still in flight stale (its result is
dropped), and it runs as soon as that one ends: it is never dropped itself, except for a
later one of its kind. `classified` is emitted whenever a result is shown;
`is_classifying` says whether one is still to come.
A checkpoint chosen while the tab is hidden loads when the tab is first shown.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPoint, QPointF, QRect, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui.widgets.activations import ActivationsView

THROTTLE_MS = 80  # at most ~12 classifications a second while drawing
CANVAS_SIZE = 280  # 10x MNIST
BRUSH = 24  # px on the canvas: ~2.4 px at 28x28, about MNIST's stroke width
PICTURE_SCALE = 5  # the 28x28 picture is shown 140 px wide, pixels kept square
MAX_BARS = 20  # more classes (CIFAR-100): the 20 most probable are shown
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp)"


class Canvas(QWidget):
    """A white square to draw on in black with a round brush; accepts dropped image files."""

    changed = Signal()  # the picture changed (while a stroke goes on, too)
    stroke_finished = Signal()
    file_dropped = Signal(str)

    def __init__(self, size: int = CANVAS_SIZE, brush: int = BRUSH, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setFixedSize(size, size)
        self.setAcceptDrops(True)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setToolTip("Draw with the left mouse button; drop an image file here to classify it")
        self.brush = brush
        self.image = QImage(size, size, QImage.Format.Format_RGB32)
        self.image.fill(QColor("white"))
        self._last: Optional[QPointF] = None
        self.blank = True

    # drawing
    def _pen(self) -> QPen:
        return QPen(QColor("black"), self.brush, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                    Qt.PenJoinStyle.RoundJoin)

    def draw_line(self, a: QPointF, b: QPointF) -> None:
        """One brush segment from a to b (a == b: a dot)."""
        painter = QPainter(self.image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(self._pen())
        if a == b:
            painter.drawPoint(a)
        else:
            painter.drawLine(a, b)
        painter.end()
        self.blank = False
        r = self.brush // 2 + 2
        self.update(QRect(QPoint(int(min(a.x(), b.x())) - r, int(min(a.y(), b.y())) - r),
                          QPoint(int(max(a.x(), b.x())) + r, int(max(a.y(), b.y())) + r)))
        self.changed.emit()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._last = event.position()
            self.draw_line(self._last, self._last)

    def mouseMoveEvent(self, event) -> None:
        if self._last is not None and event.buttons() & Qt.MouseButton.LeftButton:
            pos = event.position()
            self.draw_line(self._last, pos)
            self._last = pos

    def mouseReleaseEvent(self, event) -> None:
        if self._last is not None and event.button() == Qt.MouseButton.LeftButton:
            self._last = None
            self.stroke_finished.emit()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.drawImage(0, 0, self.image)
        painter.end()

    def clear(self) -> None:
        self.image.fill(QColor("white"))
        self.blank = True
        self.update()
        self.changed.emit()

    def show_picture(self, rgb: np.ndarray) -> None:
        """Show an (H, W, 3) uint8 picture scaled to fit, centred on white."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        picture = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        scaled = picture.scaled(self.width(), self.height(), Qt.AspectRatioMode.KeepAspectRatio,
                                Qt.TransformationMode.SmoothTransformation)
        self.image.fill(QColor("white"))
        painter = QPainter(self.image)
        painter.drawImage((self.width() - scaled.width()) // 2, (self.height() - scaled.height()) // 2, scaled)
        painter.end()
        self.blank = False
        self.update()

    def to_array(self) -> np.ndarray:
        """The canvas as an (H, W, 3) uint8 RGB array (a copy)."""
        image = self.image.convertToFormat(QImage.Format.Format_RGB888)
        h, w, stride = image.height(), image.width(), image.bytesPerLine()
        data = np.frombuffer(image.constBits(), np.uint8, count=stride * h).reshape(h, stride)
        return data[:, :3 * w].reshape(h, w, 3).copy()

    # drag and drop of image files
    def dragEnterEvent(self, event) -> None:
        if _dropped_file(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        path = _dropped_file(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.file_dropped.emit(path)


def _dropped_file(mime) -> Optional[str]:
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            return url.toLocalFile()
    return None


class _LoadSignals(QObject):
    """Carries a background load's result to the GUI thread (queued across threads)."""

    finished = Signal(int, object, str)  # generation, model or None, error message


class _PassSignals(QObject):
    """Carries a worker pass's result to the GUI thread. One object for the whole app, made
    in the GUI thread and never deleted: a worker finishing after its tab was closed emits
    on a live object (Qt dropped the closed tab's connection), and the object is never
    freed from a worker thread, as the worker's last reference to a per-tab one would be."""

    # the tab's token, the pass number, and (probs, pre, layers) or the exception
    passed = Signal(int, int, object)


_pass_signals: Optional[_PassSignals] = None
_tokens = itertools.count(1)


def _shared_pass_signals() -> _PassSignals:
    global _pass_signals
    if _pass_signals is None:
        _pass_signals = _PassSignals()
    return _pass_signals


def _forward(model, image):
    """One pass: (probabilities, preprocessed picture, layers), or the ImageError raised."""
    from lit_opt.activations import classify_with_activations
    from lit_opt.inference import ImageError

    try:
        return classify_with_activations(model, image)
    except ImageError as exc:  # EmptyImageError too: shown as a message, not raised
        return exc


class DrawTab(QWidget):
    """Draw or drop a picture; a loaded checkpoint classifies it (see the module doc)."""

    model_loaded = Signal(str)  # checkpoint path
    load_failed = Signal(str)  # the message shown
    classified = Signal(object)  # {class name: probability}, or None for an empty picture

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.model = None
        self.model_path: Optional[Path] = None
        self.probabilities: Optional[dict[str, float]] = None
        self.picture: Optional[np.ndarray] = None  # what the net was given, uint8
        self._source: Optional[str] = None  # a dropped file, classified as it is until drawn on
        self._extra: list[Path] = []  # files opened with "Open checkpoint..."
        self._pending: Optional[Path] = None
        self._generation = 0
        self._loading = False
        self._loading_path: Optional[Path] = None
        self._signals = _LoadSignals()
        self._signals.finished.connect(self._on_loaded)
        self._pass_signals = _shared_pass_signals()
        self._pass_signals.passed.connect(self._on_passed)
        self._token = next(_tokens)  # which tab a pass belongs to (every tab hears every pass)
        # Every pass runs in a worker thread; `_pass` numbers every pass asked for, so a
        # worker's result that a later pass (a stroke's end, a new model) made stale is
        # dropped. One pass at a time (the lock also keeps two passes' hooks off the model).
        self._pass = 0
        self._busy = False  # a worker pass is in flight
        self._again = False  # the canvas changed while it was: one more pass when it ends
        self._queued: Optional[tuple] = None  # (number, model, image): a final pass waiting its turn
        self._model_lock = threading.Lock()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(THROTTLE_MS)
        self._timer.timeout.connect(self.classify_in_background)
        self._build()

    # --- layout ------------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Checkpoint:"))
        self.chooser = QComboBox()
        self.chooser.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.chooser.setPlaceholderText("no checkpoint: train a run, or open a .ckpt file")
        self.chooser.currentIndexChanged.connect(self._on_chosen)
        row.addWidget(self.chooser, 1)
        self.open_button = QPushButton("Open checkpoint...")
        self.open_button.clicked.connect(self.open_checkpoint)
        row.addWidget(self.open_button)
        outer.addLayout(row)
        self.status = QLabel("Choose a checkpoint to classify what you draw.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.status)

        body = QHBoxLayout()
        left = QVBoxLayout()
        self.canvas = Canvas()
        self.canvas.changed.connect(self._on_canvas_changed)
        self.canvas.stroke_finished.connect(self._on_stroke_finished)
        self.canvas.file_dropped.connect(self.classify_file)
        left.addWidget(self.canvas)
        tools = QHBoxLayout()
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        tools.addWidget(self.clear_button)
        tools.addWidget(QLabel("brush"))
        self.brush = QSpinBox()
        self.brush.setRange(4, 60)
        self.brush.setValue(BRUSH)
        self.brush.setSuffix(" px")
        self.brush.valueChanged.connect(lambda v: setattr(self.canvas, "brush", v))
        tools.addWidget(self.brush)
        tools.addStretch(1)
        left.addLayout(tools)
        left.addStretch(1)
        body.addLayout(left)

        middle = QVBoxLayout()
        middle.addWidget(QLabel("What the net sees"))
        self.picture_label = QLabel()
        self.picture_label.setFixedSize(28 * PICTURE_SCALE, 28 * PICTURE_SCALE)
        self.picture_label.setStyleSheet("background: black; border: 1px solid gray")
        self.picture_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        middle.addWidget(self.picture_label)
        self.prediction = QLabel("")
        font = QFont()
        font.setPointSize(22)
        font.setBold(True)
        self.prediction.setFont(font)
        self.prediction.setWordWrap(True)
        self.prediction.setFixedWidth(28 * PICTURE_SCALE + 40)
        middle.addWidget(self.prediction)
        middle.addStretch(1)
        body.addLayout(middle)

        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.invertY(True)
        self.plot.setXRange(0, 1, padding=0.02)
        self.plot.setLabel("bottom", "probability")
        self.plot.setMinimumWidth(300)
        # As tall as the canvas and its tools: the activations below get the rest of the height.
        self.plot.setFixedHeight(CANVAS_SIZE + 36)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush="#4c72b0")
        self.plot.addItem(self.bars)
        body.addWidget(self.plot, 1)
        outer.addLayout(body)
        self.activations = ActivationsView()
        outer.addWidget(self.activations, 1)
        self._bar_names: list[str] = []

    # --- checkpoints -------------------------------------------------------------------------

    def set_checkpoints(self, paths: Sequence[Path]) -> None:
        """The checkpoints to offer (the app's runs); files opened by hand stay listed too.
        With no model chosen yet, the first one is chosen (it loads once the tab is visible)."""
        paths = [Path(p) for p in paths]
        current = self._current_path()
        listed = list(dict.fromkeys([*paths, *self._extra]))
        self.chooser.blockSignals(True)
        self.chooser.clear()
        for p in listed:
            self.chooser.addItem(f"{p.parent.name}/{p.name}", str(p))
            self.chooser.setItemData(self.chooser.count() - 1, str(p), Qt.ItemDataRole.ToolTipRole)
        if current is not None and current in listed:
            self.chooser.setCurrentIndex(listed.index(current))
        else:
            self.chooser.setCurrentIndex(-1)
        self.chooser.blockSignals(False)
        if current is None and self.model_path is None and listed and not self._loading:
            self.chooser.setCurrentIndex(0)  # -> _on_chosen

    def _current_path(self) -> Optional[Path]:
        data = self.chooser.currentData()
        return Path(data) if data else None

    @Slot()
    def open_checkpoint(self) -> None:
        start = str(self.model_path.parent) if self.model_path else "checkpoints"
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", start,
                                              "Checkpoints (*.ckpt);;All files (*)")
        if path:
            self.add_checkpoint(Path(path))

    def add_checkpoint(self, path: Path) -> None:
        """List a checkpoint file (if new), choose it and load it."""
        path = Path(path)
        if path not in self._extra:
            self._extra.append(path)
        index = self.chooser.findData(str(path))
        if index < 0:
            self.chooser.addItem(f"{path.parent.name}/{path.name}", str(path))
            index = self.chooser.count() - 1
            self.chooser.setItemData(index, str(path), Qt.ItemDataRole.ToolTipRole)
        if index == self.chooser.currentIndex():
            self.load_checkpoint(path)
        else:
            self.chooser.setCurrentIndex(index)  # -> _on_chosen
            self.load_checkpoint(path)

    @Slot(int)
    def _on_chosen(self, index: int) -> None:
        path = self._current_path()
        if path is None or path == self.model_path:
            return
        if self.isVisible():
            self.load_checkpoint(path)
        else:
            self._pending = path
            self.status.setText(f"{path} will load when this tab is shown.")

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._pending is not None:
            path, self._pending = self._pending, None
            self.load_checkpoint(path)

    def load_checkpoint(self, path: Path) -> None:
        """Load in a background thread; model_loaded or load_failed tells when it is done."""
        path = Path(path)
        if self._loading and self._loading_path == path:
            return
        self._pending = None
        self._generation += 1
        generation, signals = self._generation, self._signals
        self._loading, self._loading_path = True, path
        self.status.setText(f"Loading {path} ...")
        self.status.setStyleSheet("")

        def work():
            model, error = None, ""
            try:
                from lit_opt.inference import load

                model = load(path)
            except Exception as exc:  # CheckpointError, or anything unexpected: shown, never raised
                error = str(exc) or type(exc).__name__
            signals.finished.emit(generation, model, error)

        threading.Thread(target=work, name="lit_opt-load-checkpoint", daemon=True).start()

    @Slot(int, object, str)
    def _on_loaded(self, generation: int, model, error: str) -> None:
        if generation != self._generation:
            return  # a later choice superseded this load
        path, self._loading = self._loading_path, False
        if model is None:
            self.status.setText(f"Could not load the checkpoint: {error}")
            self.status.setStyleSheet("color: #b00020")
            self.load_failed.emit(error)
            return
        from lit_opt.inference import describe

        self.model, self.model_path = model, path
        self.status.setText(f"{describe(model)}: {path}")
        self._reset_bars()
        self.classify_now()
        self.model_loaded.emit(str(path))

    # --- classifying -------------------------------------------------------------------------

    def _reset_bars(self) -> None:
        self._bar_names = []
        self.bars.setOpts(x0=[], y=[], width=[], height=0.7)

    def _show_bars(self, probs: dict[str, float]) -> None:
        if len(probs) <= MAX_BARS:
            names = self.model.class_names  # fixed order: bars grow and shrink in place
        else:
            names = list(probs)[:MAX_BARS]  # most probable first
        values = [probs[n] for n in names]
        y = np.arange(len(names), dtype=float)
        self.bars.setOpts(x0=np.zeros(len(names)), y=y, width=np.array(values), height=0.7)
        if names != self._bar_names:
            self._bar_names = list(names)
            self.plot.getAxis("left").setTicks([[(i, n) for i, n in enumerate(names)]])
            self.plot.setYRange(-0.6, len(names) - 0.4, padding=0)

    def chart_values(self) -> dict[str, float]:
        """{class name: bar length} as the chart shows it now."""
        opts = self.bars.opts
        widths = opts.get("width")
        if widths is None or len(self._bar_names) == 0:
            return {}
        return {n: float(w) for n, w in zip(self._bar_names, np.asarray(widths, dtype=float))}

    def canvas_image(self) -> np.ndarray:
        """The canvas as an (H, W, 3) uint8 RGB array: what gets classified after drawing."""
        return self.canvas.to_array()

    @Slot()
    def _on_canvas_changed(self) -> None:
        self._source = None  # drawing on a dropped picture: classify the canvas from now on
        if not self._timer.isActive():
            self._timer.start()

    @Slot()
    def _on_stroke_finished(self) -> None:
        self._timer.stop()
        self.classify_now()

    @property
    def is_classifying(self) -> bool:
        """A pass is in flight, waiting, or due (the throttle's timer): a result is to come."""
        return self._busy or self._queued is not None or self._timer.isActive()

    @Slot()
    def classify_now(self) -> None:
        """Classify the dropped file, or the canvas as it is now, with the loaded model (if
        any): a stroke's end, Clear, a dropped file, a new model. Returns at once; the pass
        runs in the worker thread as soon as the one in flight (now stale) ends, and
        `classified` tells when its result is shown. Only a later call drops it."""
        self._timer.stop()
        self._pass += 1  # a worker pass still in flight is stale from now on
        self._again = False  # and this pass sees the latest canvas
        self._queued = None  # as does a final pass still waiting: this one replaces it
        if self.model is None:
            return
        image = self._source if self._source is not None else self.canvas_image()  # a copy
        if self._busy:
            self._queued = (self._pass, self.model, image)  # started by _on_passed
        else:
            self._start(self._pass, self.model, image)

    @Slot()
    def classify_in_background(self) -> None:
        """While drawing (the throttle's timer): a pass of the canvas as it is, unless one is
        in flight or waiting: then one more when it ends, so the strokes never wait for the
        net; the result is drawn when it arrives, unless a later pass superseded it."""
        if self.model is None:
            return
        if self._busy:
            self._again = True
            return
        self._pass += 1
        image = self._source if self._source is not None else self.canvas_image()  # a copy
        self._start(self._pass, self.model, image)

    def _start(self, number: int, model, image) -> None:
        """Pass `number` of `image` through `model` in a worker thread; its result comes back
        through the shared _PassSignals (queued to the GUI thread) to _on_passed."""
        self._busy = True
        token, lock, signals = self._token, self._model_lock, self._pass_signals

        def work():
            try:
                with lock:
                    result = _forward(model, image)
            except Exception as exc:  # anything unexpected: reported in the tab, never lost in a thread
                result = exc
            signals.passed.emit(token, number, result)

        threading.Thread(target=work, name="lit_opt-draw-pass", daemon=True).start()

    @Slot(int, int, object)
    def _on_passed(self, token: int, number: int, result) -> None:
        if token != self._token:
            return  # another tab's pass
        self._busy = False
        if self._queued is not None:  # a final pass waited for this one (stale now): start it
            queued, self._queued = self._queued, None
            self._start(*queued)
        elif number == self._pass:
            self._show_result(result)
        if self._again:
            self._again = False
            if not self._timer.isActive():
                self._timer.start()

    def _show_result(self, result) -> None:
        from lit_opt.inference import EmptyImageError, ImageError

        if isinstance(result, EmptyImageError):
            self._show_empty("Draw a digit." if self.model.hparams.data_info.get("dataset") == "mnist"
                             else "Draw something.")
            return
        if isinstance(result, ImageError):
            self._show_empty(str(result))
            return
        if isinstance(result, Exception):
            self._show_empty(f"Could not classify the picture: {type(result).__name__}: {result}")
            return
        probs, pre, layers = result
        self.probabilities, self.picture = probs, pre.picture
        self._show_bars(probs)
        self._show_picture(pre.picture)
        self.activations.set_layers(layers, self.model.class_names)
        top = next(iter(probs))
        self.prediction.setText(f"{top}  {100 * probs[top]:.0f}%")
        self.classified.emit(probs)

    def _show_empty(self, text: str) -> None:
        self.probabilities, self.picture = None, None
        if self.model is not None:
            self._show_bars({n: 0.0 for n in self.model.class_names})
        self.picture_label.clear()
        self.activations.set_layers(None)
        self.prediction.setText(text)
        self.classified.emit(None)

    def _show_picture(self, pic: np.ndarray) -> None:
        pic = np.ascontiguousarray(pic)
        h, w = pic.shape[:2]
        if pic.ndim == 2:
            image = QImage(pic.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        else:
            image = QImage(pic.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        scaled = image.scaled(self.picture_label.width(), self.picture_label.height(),
                              Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        self.picture_label.setPixmap(QPixmap.fromImage(scaled))

    @Slot()
    def clear(self) -> None:
        self._source = None
        self.canvas.clear()
        self.classify_now()

    @Slot(str)
    def classify_file(self, path: str) -> None:
        """Show a picture file on the canvas and classify the file itself."""
        from lit_opt.preprocess import ImageError, flatten_alpha, to_float

        try:
            pixels, alpha = to_float(path)
        except ImageError as exc:
            self.status.setText(str(exc))
            self.status.setStyleSheet("color: #b00020")
            return
        rgb = flatten_alpha(pixels, alpha)
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, axis=2)
        self.canvas.show_picture(np.rint(rgb).astype(np.uint8))
        self._timer.stop()
        self._source = path
        self.classify_now()
