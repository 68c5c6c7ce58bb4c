"""Run list: the runs found in the runs folder and every run started since the app opened.

Selecting a run shows its curves, weights and confusion matrix; ticking several overlays
their curves (one colour per run, legend: optimizer and lr). "Resume" continues the
selected run from its last.ckpt, in its own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (QHBoxLayout, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout,
                               QWidget)

from gui.records import RunRecord

COLUMNS = ["run", "status", "optimizer", "lr", "net", "dataset", "epochs", "best val acc"]
_KEY = Qt.ItemDataRole.UserRole


class RunList(QWidget):
    selected = Signal(object)  # the RunRecord now selected, or None
    ticked_changed = Signal()
    resume_requested = Signal(object)  # RunRecord
    rescan_requested = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.tree = QTreeWidget()
        self.tree.setObjectName("runs")
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setColumnWidth(0, 200)
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.headerItem().setToolTip(0, "tick runs to overlay their curves")
        self.tree.currentItemChanged.connect(self._on_current)
        self.tree.itemChanged.connect(self._on_item_changed)
        layout.addWidget(self.tree, 1)
        buttons = QHBoxLayout()
        self.resume_button = QPushButton("Resume selected")
        self.resume_button.setToolTip("continue the selected run from its last.ckpt, in its own folder")
        self.resume_button.clicked.connect(self._on_resume)
        self.rescan_button = QPushButton("Rescan folder")
        self.rescan_button.clicked.connect(self.rescan_requested)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.rescan_button)
        layout.addLayout(buttons)
        self._records: dict[str, RunRecord] = {}
        self._items: dict[str, QTreeWidgetItem] = {}

    def records(self) -> list[RunRecord]:
        return list(self._records.values())

    def record(self, run_dir: Path | str) -> Optional[RunRecord]:
        return self._records.get(_key(run_dir))

    def add(self, rec: RunRecord, first: bool = False) -> None:
        """Add a run (or refresh its row if it is listed already)."""
        key = _key(rec.run_dir)
        if key in self._items:
            self._records[key] = rec
            self.update_row(rec)
            return
        self._records[key] = rec
        item = QTreeWidgetItem()
        item.setData(0, _KEY, key)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        self.tree.blockSignals(True)
        item.setCheckState(0, Qt.CheckState.Unchecked)
        self.tree.blockSignals(False)
        if first:
            self.tree.insertTopLevelItem(0, item)
        else:
            self.tree.addTopLevelItem(item)
        self._items[key] = item
        self.update_row(rec)

    def update_row(self, rec: RunRecord) -> None:
        item = self._items.get(_key(rec.run_dir))
        if item is None:
            return
        acc = rec.best_val_acc
        epochs = len(rec.epochs) if rec.epochs else (rec.summary or {}).get("epochs", "")
        values = [rec.name, rec.status, rec.optimizer, "" if rec.lr is None else f"{rec.lr:g}", rec.net,
                  rec.dataset, str(epochs), "" if acc is None else f"{acc:.4f}"]
        self.tree.blockSignals(True)
        for col, value in enumerate(values):
            item.setText(col, value)
        item.setToolTip(0, str(rec.run_dir))
        self.tree.blockSignals(False)

    def select(self, rec: RunRecord) -> None:
        item = self._items.get(_key(rec.run_dir))
        if item is not None:
            self.tree.setCurrentItem(item)

    def current(self) -> Optional[RunRecord]:
        item = self.tree.currentItem()
        return None if item is None else self._records.get(item.data(0, _KEY))

    def ticked(self) -> list[RunRecord]:
        return [self._records[key] for key, item in self._items.items()
                if item.checkState(0) == Qt.CheckState.Checked]

    def set_ticked(self, rec: RunRecord, on: bool = True) -> None:
        item = self._items.get(_key(rec.run_dir))
        if item is not None:
            item.setCheckState(0, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def checkpoints(self) -> list[Path]:
        """best.ckpt (else last.ckpt) of every listed run, for the Draw tab."""
        return [p for rec in self._records.values() if (p := rec.best_checkpoint()) is not None]

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _on_current(self, current, _previous) -> None:
        self.selected.emit(None if current is None else self._records.get(current.data(0, _KEY)))

    @Slot(QTreeWidgetItem, int)
    def _on_item_changed(self, _item, column: int) -> None:
        if column == 0:
            self.ticked_changed.emit()

    @Slot()
    def _on_resume(self) -> None:
        rec = self.current()
        if rec is not None:
            self.resume_requested.emit(rec)


def _key(run_dir: Path | str) -> str:
    return str(Path(run_dir).resolve())
