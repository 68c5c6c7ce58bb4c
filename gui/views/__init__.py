"""The app's run views: each a tab that draws some of a run's series.

    class MyView(RunView):
        tab_title, order = "My view", 50
        series = ("train/my_series",)          # what it draws (lit_opt/diagnostics declares them)
        def show_runs(self, shown, ticked): ...  # which runs: the selected one, the ticked ones
        def refresh(self): ...                  # redraw from those records (the window's timer)

A view is registered by existing: every module in this package that defines a RunView
subclass is a tab, in `order`. The window holds the list (`views()`) and wires none of them
by hand; the records (gui/records.py) hold every series of a run, live or read back from its
folder, so a view draws both with the same code.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Optional

from PySide6.QtWidgets import QWidget


class RunView(QWidget):
    tab_title = ""
    order = 100
    series: tuple[str, ...] = ()

    def show_runs(self, shown, ticked: list) -> None:
        """The runs to draw: `shown` (the selected run, or None) and the `ticked` ones."""
        raise NotImplementedError

    def refresh(self) -> None:
        """Redraw what changed in the records since the last call (cheap when nothing did)."""
        raise NotImplementedError


def view_classes() -> list[type]:
    """Every RunView subclass defined in this package's modules, in `order`."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, RunView) and value is not RunView
                    and value.__module__ == module.__name__):
                found.append(value)
    return sorted(found, key=lambda cls: (cls.order, cls.__name__))


def views(parent: Optional[QWidget] = None) -> list[RunView]:
    return [cls(parent) for cls in view_classes()]
