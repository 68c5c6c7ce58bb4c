"""The plotting surface every run view draws on: pyqtgraph's GraphicsLayoutWidget that also
measures its own paints.

The window spaces its redraws by what a frame costs (gui/main_window.py): painting is Python
(pyqtgraph) under the GIL that the training thread needs. Timed here, inside the paint Qt
does anyway, a frame is measured without painting it a second time (a synchronous repaint
to time it was followed by Qt's own paint of the same frame).
"""

from __future__ import annotations

import time

import pyqtgraph as pg


class TimedGraphics(pg.GraphicsLayoutWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_paint_seconds = 0.0  # the latest paint's duration

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        start = time.perf_counter()
        super().paintEvent(event)
        self.last_paint_seconds = time.perf_counter() - start
