"""Every layer's activations for one picture, for the Draw tab: one row per layer, stacked
in a scroll area.

    view = ActivationsView()
    view.set_layers(lit_opt.activations.activations(model, picture), class_names)

- a conv layer's feature maps as tiles, one per channel, in a grid as wide as the view
  allows (tiles enlarged by whole pixels, at most TILE_MAX px, a layer at most
  LAYER_MAX_HEIGHT px tall);
- a dense layer as a heat strip, one cell per unit (wrapped into rows when it has more
  units than the view has pixels to spare);
- one diverging colour map for every layer (ColorBrewer's RdBu): red positive, blue
  negative, white 0, each layer scaled to its own largest |value| (written beside
  it), so a layer with small numbers still shows its pattern;
- hovering a tile or a cell shows its value (and, for the logits, its class).

The pictures are numpy arrays turned into one QImage per layer (no per-tile items), so
an update while drawing costs a few milliseconds. `rows[i].canvas` holds the values as
drawn (NaN in the gaps), read back by `rows[i].tile(k)`. No torch here: the layers come
in as plain arrays (`lit_opt.activations.Layer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

TILE_MAX = 84  # px: a 28x28 feature map drawn 3x, a 10x10 one up to 8x
LAYER_MAX_HEIGHT = 150  # px: a layer with many channels gets smaller tiles, not a taller row
GAP = 2  # px between tiles
STRIP_HEIGHT = 20  # px: one row of a dense layer's strip
CELL_MAX = 40  # px: the widest cell of a strip (10 logits: 400 px)
TEXT_WIDTH = 190  # px: the column with each layer's name
GAP_RGB = (190, 190, 190)  # between tiles: gray, so an all-zero (white) tile still shows its edge
# ColorBrewer's RdBu, blue (negative) to red (positive) through white: zero is white (CET-D1,
# the Weights view's map, is light gray at zero) and the strong end is dark, so a weakly
# active feature map still shows against an inactive one.
COLOUR_STOPS = ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#ffffff", "#fddbc7", "#f4a582",
                "#d6604d", "#b2182b", "#67001f")
NAMES_HEIGHT = 15  # px under the logits strip for the class names


def _lut() -> np.ndarray:
    cmap = pg.ColorMap(np.linspace(0.0, 1.0, len(COLOUR_STOPS)), list(COLOUR_STOPS))
    # 257 entries: entry 128 is the map's exact middle, so 0 is drawn exactly white.
    return cmap.getLookupTable(nPts=257, alpha=False).astype(np.uint8)


@dataclass
class Layout:
    """How a layer is drawn: `count` tiles of `tile` (h, w) values, `cols` x `rows` of them,
    `gap` px apart; each value a `sx` x `sy` px block. A dense layer is `count` tiles of one
    value each: a strip of cells `sx` wide and `sy` tall."""

    count: int
    tile: tuple[int, int]
    sx: int
    sy: int
    cols: int
    rows: int
    gap: int

    def size(self) -> tuple[int, int]:
        """(height, width) in px."""
        th, tw = self.tile
        return (self.rows * (th * self.sy + self.gap) - self.gap,
                self.cols * (tw * self.sx + self.gap) - self.gap)

    def origin(self, k: int) -> tuple[int, int]:
        """(y, x) px of tile k's top left corner."""
        r, c = divmod(k, self.cols)
        return r * (self.tile[0] * self.sy + self.gap), c * (self.tile[1] * self.sx + self.gap)

    def at(self, y: int, x: int) -> Optional[tuple[int, int, int]]:
        """(tile, row, column) of the value drawn at pixel (y, x); None in a gap or outside."""
        th, tw = self.tile
        r, dy = divmod(y, th * self.sy + self.gap)
        c, dx = divmod(x, tw * self.sx + self.gap)
        k = r * self.cols + c
        if y < 0 or x < 0 or c >= self.cols or k >= self.count or dy >= th * self.sy or dx >= tw * self.sx:
            return None
        return k, dy // self.sy, dx // self.sx


def layout_for(shape: Sequence[int], width: int) -> Layout:
    """Tiles for (C, H, W), a strip for (units,), fitted into `width` px."""
    width = max(width, 40)
    if len(shape) == 3:
        c, h, w = (int(s) for s in shape)
        for scale in range(max(1, TILE_MAX // max(h, w)), 0, -1):
            cols = max(1, min(c, (width + GAP) // (w * scale + GAP)))
            rows = math.ceil(c / cols)
            fits = w * scale <= width and rows * (h * scale + GAP) - GAP <= LAYER_MAX_HEIGHT
            if fits or scale == 1:
                cols = math.ceil(c / rows)  # balanced rows: no lonely last row
                return Layout(c, (h, w), scale, scale, cols, rows, GAP)
    if len(shape) == 1:
        n = int(shape[0])
        cell, gap = min(CELL_MAX, (width + 1) // n - 1), 1  # cells 1 px apart when they can spare it
        if cell < 7:
            cell, gap = max(2, width // n), 0
        per_row = max(1, min(n, (width + gap) // (cell + gap)))
        if per_row < n:  # wrapped: a 1 px gap keeps the rows apart
            gap = 1
            per_row = max(1, (width + gap) // (cell + gap))
        rows = math.ceil(n / per_row)
        per_row = math.ceil(n / rows)  # balanced rows
        return Layout(n, (1, 1), cell, STRIP_HEIGHT if rows == 1 else STRIP_HEIGHT // 2, per_row, rows, gap)
    raise ValueError(f"activations must be (C, H, W) or (units,), got shape {tuple(shape)}")


def compose(values: np.ndarray, layout: Layout) -> np.ndarray:
    """The layer as drawn: a float (height, width) canvas of values, NaN in the gaps."""
    th, tw = layout.tile
    tiles = np.asarray(values, np.float32).reshape(layout.count, th, tw)
    # nearest-neighbour enlargement: every value a sy x sx block
    big = tiles.repeat(layout.sy, axis=1).repeat(layout.sx, axis=2)
    canvas = np.full(layout.size(), np.nan, np.float32)
    for k in range(layout.count):
        y, x = layout.origin(k)
        canvas[y:y + th * layout.sy, x:x + tw * layout.sx] = big[k]
    return canvas


def read_back(canvas: np.ndarray, layout: Layout) -> np.ndarray:
    """The values a canvas shows, (count, h, w): one pixel of each value's block."""
    th, tw = layout.tile
    out = np.empty((layout.count, th, tw), np.float32)
    for k in range(layout.count):
        y, x = layout.origin(k)
        out[k] = canvas[y:y + th * layout.sy:layout.sy, x:x + tw * layout.sx:layout.sx]
    return out


def colour(canvas: np.ndarray, limit: float, lut: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8: the diverging map over [-limit, limit], gray in the gaps."""
    gaps = np.isnan(canvas)
    half = (len(lut) - 1) / 2
    index = np.rint((np.nan_to_num(canvas) / limit + 1.0) * half)
    rgb = lut[np.clip(index, 0, len(lut) - 1).astype(np.intp)]
    rgb[gaps] = GAP_RGB
    return np.ascontiguousarray(rgb)


class LayerImage(QLabel):
    """A layer's picture; hovering shows the value under the mouse."""

    def __init__(self, row: "LayerRow"):
        super().__init__()
        self._row = row
        self.setMouseTracking(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def mouseMoveEvent(self, event) -> None:
        text = self._row.describe_at(int(event.position().x()), int(event.position().y()))
        if text:
            QToolTip.showText(event.globalPosition().toPoint() + QPoint(12, 12), text, self)
        else:
            QToolTip.hideText()


class LayerRow:
    """One layer: its name and scale on the left, its picture on the right."""

    def __init__(self, grid: QGridLayout, index: int):
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setFixedWidth(TEXT_WIDTH)
        self.title.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.image = LayerImage(self)
        grid.addWidget(self.title, index, 0)
        grid.addWidget(self.image, index, 1, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.label = ""
        self.values: Optional[np.ndarray] = None  # what is shown: (C, H, W) or (units,)
        self.layout: Optional[Layout] = None
        self.canvas: Optional[np.ndarray] = None  # float values as drawn, NaN in gaps
        self.limit = 1.0
        self.class_names: Optional[Sequence[str]] = None

    def show(self, label: str, values: np.ndarray, width: int, lut: np.ndarray,
             class_names: Optional[Sequence[str]] = None) -> None:
        self.label, self.values, self.class_names = label, np.asarray(values, np.float32), class_names
        self.layout = layout_for(self.values.shape, width)
        self.canvas = compose(self.values, self.layout)
        peak = float(np.abs(self.values).max(initial=0.0))
        self.limit = peak if peak > 0 else 1.0
        rgb = colour(self.canvas, self.limit, lut)
        h, w = rgb.shape[:2]
        image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        pixmap = QPixmap.fromImage(image)
        if self._names_fit():
            pixmap = self._with_names(pixmap)
        self.image.setPixmap(pixmap)
        self.image.setFixedSize(pixmap.width(), pixmap.height())
        if self.values.ndim == 3:
            shape = "x".join(str(s) for s in self.values.shape)
        else:
            shape = f"{self.values.size} units"
        scale = f"&plusmn;{self.limit:.3g}" if peak > 0 else "all 0"
        self.title.setText(f"<b>{_escape(label)}</b><br><span style='color:#555'>{shape} &middot; "
                           f"colours {scale}</span>")

    def _names_fit(self) -> bool:
        """The logits strip names its cells when each is wide enough for a short name."""
        names, lay = self.class_names, self.layout
        return (names is not None and self.values.ndim == 1 and len(names) == self.values.size
                and lay.rows == 1 and lay.sx >= 7 * max(len(str(n)) for n in names))

    def _with_names(self, strip: QPixmap) -> QPixmap:
        out = QPixmap(strip.width(), strip.height() + NAMES_HEIGHT)
        out.fill(Qt.GlobalColor.transparent)
        painter = QPainter(out)
        painter.drawPixmap(0, 0, strip)
        painter.setPen(QColor("#333"))
        font = QFont(painter.font())
        font.setPointSize(8)
        painter.setFont(font)
        for k, name in enumerate(self.class_names):
            _, x = self.layout.origin(k)
            painter.drawText(QRect(x, strip.height(), self.layout.sx, NAMES_HEIGHT),
                             Qt.AlignmentFlag.AlignCenter, str(name))
        painter.end()
        return out

    def shown_values(self) -> np.ndarray:
        """The values the picture shows, read back from the canvas, in the shape of `values`."""
        return read_back(self.canvas, self.layout).reshape(self.values.shape)

    def tile_count(self) -> int:
        return self.layout.count if self.values.ndim == 3 else 0

    def describe_at(self, x: int, y: int) -> str:
        """The tooltip for pixel (x, y) of the picture: which value it is, and the value."""
        if self.canvas is None:
            return ""
        where = self.layout.at(y, x)
        if where is None:
            return ""
        k, py, px = where
        if self.values.ndim == 1:
            value, names = self.values[k], self.class_names
            named = names is not None and len(names) == self.values.size
            what = f"class {names[k]}" if named else f"unit {k}"
            return f"{self.label}\n{what}: {value:.4g}"
        return f"{self.label}\nchannel {k}, row {py}, column {px}: {self.values[k, py, px]:.4g}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class ActivationsView(QWidget):
    """Every layer's activations for one picture (see the module doc)."""

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._lut = _lut()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.heading = QLabel(
            "<b>Activations</b>, first layer at the top: &nbsp;<span style='color:#b2182b'>red +</span>, "
            "<span style='color:#2166ac'>blue &minus;</span>, white 0; each layer scaled to its own "
            "largest |value|; hover for values")
        self.heading.setWordWrap(True)
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        outer.addWidget(self.heading)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        body = QWidget()
        self._grid = QGridLayout(body)
        self._grid.setContentsMargins(4, 4, 4, 4)
        self._grid.setHorizontalSpacing(10)
        self._grid.setVerticalSpacing(8)
        self._grid.setColumnStretch(1, 1)
        self.placeholder = QLabel("Choose a checkpoint and draw: each layer's activations appear here.")
        self.placeholder.setStyleSheet("color: #666")
        self._grid.addWidget(self.placeholder, 0, 0, 1, 2)
        self._grid.setRowStretch(1000, 1)  # rows packed at the top
        self.scroll.setWidget(body)
        outer.addWidget(self.scroll, 1)
        self.rows: list[LayerRow] = []
        self.layers: list = []  # the Layer tuples shown (label, values, module)
        self._class_names: Optional[Sequence[str]] = None
        self._width = 0

    def image_width(self) -> int:
        """px the pictures may take: the view's width less the names, margins and a scroll bar
        (reserved whether shown or not, so a scroll bar appearing never re-lays the pictures)."""
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        return max(40, self.scroll.width() - bar - TEXT_WIDTH - 10 - 8 - 4)

    def set_layers(self, layers: Optional[Sequence], class_names: Optional[Sequence[str]] = None) -> None:
        """Show these layers (lit_opt.activations.Layer, or (label, values) pairs); None or
        [] shows the placeholder (no model, or nothing drawn)."""
        layers = list(layers or [])
        self.layers, self._class_names = layers, class_names
        self.placeholder.setVisible(not layers)
        while len(self.rows) < len(layers):  # rows made once per model, then updated in place
            self.rows.append(LayerRow(self._grid, len(self.rows) + 1))
        for i, row in enumerate(self.rows):
            visible = i < len(layers)
            row.title.setVisible(visible)
            row.image.setVisible(visible)
        self._draw()

    def _draw(self) -> None:
        self._width = self.image_width()
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            label, values = layer[0], layer[1]
            names = self._class_names if i == last else None
            self.rows[i].show(label, values, self._width, self._lut, names)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.layers and self.image_width() != self._width:
            self._draw()
