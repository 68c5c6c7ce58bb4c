"""Weights: a layer's weights as a grid of image tiles on a symmetric colour map.

A dense layer on images gives one tile per unit, its weights reshaped to the input's
H x W (28x28 for MNIST: the templates the units learn); a conv layer gives one tile per
filter. Input channels are averaged, as `lit_opt.artifacts.weight_images` does for the
run folder's weights.png. Red is positive, blue negative, white zero.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui.views import RunView
from gui.views.graphics import TimedGraphics

GAP = 1  # pixels between tiles (left transparent)


def weight_tiles(weight: np.ndarray, input_shape: Optional[Sequence[int]]) -> np.ndarray:
    """(K, H, W) images of a Linear (out, in) or Conv2d (out, in, kh, kw) weight."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim == 4:
        return w.mean(axis=1)
    if input_shape is not None and len(input_shape) == 3 and w.shape[1] == int(np.prod(input_shape)):
        c, h, width = (int(s) for s in input_shape)
        return w.reshape(w.shape[0], c, h, width).mean(axis=1)
    side = int(math.ceil(math.sqrt(w.shape[1])))  # a hidden layer: pad each unit to a square
    padded = np.zeros((w.shape[0], side * side), np.float32)
    padded[:, :w.shape[1]] = w
    return padded.reshape(-1, side, side)


def tile_grid(tiles: np.ndarray, gap: int = GAP) -> np.ndarray:
    """Tiles laid out row by row in a near-square grid, NaN between and after them."""
    k, h, w = tiles.shape
    cols = int(math.ceil(math.sqrt(k)))
    rows = int(math.ceil(k / cols))
    grid = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, np.float32)
    for i in range(k):
        r, c = divmod(i, cols)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
    return grid


def grid_tile(grid: np.ndarray, index: int, count: int, shape: tuple[int, int], gap: int = GAP) -> np.ndarray:
    """Tile `index` read back out of a grid of `count` tiles of `shape`."""
    cols = int(math.ceil(math.sqrt(count)))
    r, c = divmod(index, cols)
    h, w = shape
    return grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w]


def describe(name: str, weight: np.ndarray) -> str:
    if weight.ndim == 4:
        return f"layer {name}: conv {weight.shape[1]}→{weight.shape[0]}, {weight.shape[2]}x{weight.shape[3]}"
    return f"layer {name}: dense {weight.shape[1]}→{weight.shape[0]}"


class WeightsView(RunView):
    tab_title, order = "Weights", 20
    series = ("weights",)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.layer = QComboBox()
        self.layer.setObjectName("layer")
        self.layer.setToolTip("which Linear/Conv2d layer to show (the first one by default)")
        self.layer.currentIndexChanged.connect(self._on_layer)
        self.info = QLabel("No weights yet: they appear after the first epoch.")
        bar.addWidget(QLabel("layer"))
        bar.addWidget(self.layer)
        bar.addWidget(self.info, 1)
        layout.addLayout(bar)
        self.graphics = TimedGraphics()
        self.graphics.setBackground("w")
        layout.addWidget(self.graphics, 1)
        self.plot = self.graphics.addPlot()
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.colour_bar = pg.ColorBarItem(values=(-1, 1), colorMap=pg.colormap.get("CET-D1"),
                                          interactive=False, label="weight (red +, blue -)")
        self.colour_bar.setImageItem(self.image, insert_in=self.plot)
        self._weights: dict[str, np.ndarray] = {}
        self._input_shape: Optional[Sequence[int]] = None
        self._dirty = False
        self._rec, self._source = None, None
        self.tiles: Optional[np.ndarray] = None  # what is shown, (K, H, W)
        self.grid: Optional[np.ndarray] = None

    def set_weights(self, weights: Optional[dict[str, np.ndarray]], input_shape: Optional[Sequence[int]]) -> None:
        """New weights (the whole {layer: array} dict); drawn by the next `refresh()`."""
        weights = dict(weights or {})
        names = list(weights)
        if names != [self.layer.itemData(i) for i in range(self.layer.count())]:
            current = self.layer.currentData()
            self.layer.blockSignals(True)
            self.layer.clear()
            for name in names:
                self.layer.addItem(describe(name, weights[name]), name)
            self.layer.setCurrentIndex(max(self.layer.findData(current), 0))
            self.layer.blockSignals(False)
        self._weights, self._input_shape = weights, input_shape
        self._source = getattr(self, "_rec", None) and self._rec.weights
        self._dirty = True

    def show_runs(self, shown, ticked: list) -> None:
        self._rec = shown
        self.set_weights(shown.weights if shown is not None else None,
                         shown.input_shape if shown is not None else None)

    def refresh(self) -> None:
        rec = getattr(self, "_rec", None)
        if rec is not None and rec.weights is not self._source:  # a new epoch's weights arrived
            self.set_weights(rec.weights, rec.input_shape)
        if not self._dirty:
            return
        self._dirty = False
        name = self.layer.currentData()
        if name is None or name not in self._weights:
            self.tiles = self.grid = None
            self.image.clear()
            self.info.setText("No weights yet: they appear after the first epoch.")
            return
        self.tiles = weight_tiles(self._weights[name], self._input_shape)
        self.grid = tile_grid(self.tiles)
        limit = float(np.abs(self.tiles).max()) or 1.0
        self.image.setImage(self.grid, levels=(-limit, limit), autoLevels=False)
        self.colour_bar.setLevels((-limit, limit))
        k, h, w = self.tiles.shape
        when = getattr(self, "_rec", None) and self._rec.weights_when
        self.info.setText((f"weights {when}: " if when else "") + f"{k} tiles of {h}x{w}; |w| up to {limit:.3g}")

    @Slot(int)
    def _on_layer(self, _index: int) -> None:
        self._dirty = True
        self.refresh()
