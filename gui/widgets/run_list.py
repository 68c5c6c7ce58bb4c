"""Run list: the runs found in the runs folder and every run started since the app opened.

Selecting a run shows it in every view; ticking runs compares them in the Curves tab. Columns
sort (numbers as numbers), the filter box keeps the rows whose text holds every word typed,
and each run says what state it is in: running, stopped (a last.ckpt resumes it), finished,
diverged or failed. The buttons resume the selected run, copy its settings into the form,
or move it to the runs folder's trash (never deleted); the note under the list is saved in
the run's folder as note.txt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QHBoxLayout, QLineEdit, QMenu, QPlainTextEdit, QPushButton, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from gui.records import STATUSES, RunRecord

COLUMNS = ["run", "status", "best val acc", "epochs", "optimizer", "lr", "net", "dataset"]
STATUS_TEXT = {"stopped": "stopped (resumable)"}
_KEY = Qt.ItemDataRole.UserRole
_SORT = Qt.ItemDataRole.UserRole + 1  # the value a column sorts by, where not its text
NOTE_SAVE_MS = 600  # a note is saved this long after the last keystroke (and on switching runs)


class _Row(QTreeWidgetItem):
    """A row that sorts numbers as numbers and statuses in their order, blanks last."""

    def __lt__(self, other: QTreeWidgetItem) -> bool:
        col = self.treeWidget().sortColumn() if self.treeWidget() else 0
        a, b = self.data(col, _SORT), other.data(col, _SORT)
        if a is None or b is None:
            if a is None and b is None:
                return self.text(col).lower() < other.text(col).lower()
            return b is None  # blanks sort after values
        return a < b


class RunList(QWidget):
    selected = Signal(object)  # the RunRecord now selected, or None
    ticked_changed = Signal()
    resume_requested = Signal(object)  # RunRecord
    copy_requested = Signal(object)  # RunRecord: put its settings in the form
    more_requested = Signal(object)  # RunRecord: train it for more epochs
    trash_requested = Signal(object)  # RunRecord: move its folder to the trash
    rescan_requested = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.filter = QLineEdit()
        self.filter.setObjectName("run_filter")
        self.filter.setPlaceholderText("filter: words in a run's name, optimizer, net, dataset, status…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._apply_filter)
        layout.addWidget(self.filter)
        self.tree = QTreeWidget()
        self.tree.setObjectName("runs")
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # run names differ at their ends
        for col, width in enumerate((150, 110, 70, 48, 72, 52, 56, 80)):
            self.tree.setColumnWidth(col, width)
        self.tree.headerItem().setToolTip(0, "tick runs to compare them in the Curves tab")
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # newest first until a header is clicked
        self.tree.currentItemChanged.connect(self._on_current)
        self.tree.itemChanged.connect(self._on_item_changed)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        layout.addWidget(self.tree, 1)
        buttons = QHBoxLayout()
        self.resume_button = self._button("Resume", "resume", self.resume_requested,
                                          "continue the selected run from its last.ckpt, in its own folder")
        self.more_button = self._button("More epochs…", "more_epochs", self.more_requested,
                                        "train the selected run (finished or stopped) for more epochs, continuing "
                                        "its curves; an ended schedule holds its final rate")
        self.copy_button = self._button("Copy to form", "copy_settings", self.copy_requested,
                                        "put the selected run's settings in the form, to start a variant of it")
        self.trash_button = self._button("Move to trash", "trash", self.trash_requested,
                                         "move the selected run's folder into the runs folder's .trash "
                                         "(nothing is deleted; move it back to restore it)")
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setToolTip("list the run folders in the runs folder again")
        self.rescan_button.clicked.connect(self.rescan_requested)
        for button in (self.resume_button, self.more_button, self.copy_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        buttons2 = QHBoxLayout()
        for button in (self.trash_button, self.rescan_button):
            buttons2.addWidget(button)
        layout.addLayout(buttons2)
        self.note = QPlainTextEdit()
        self.note.setObjectName("note")
        self.note.setPlaceholderText("a note about the selected run (saved in its folder as note.txt)")
        self.note.setMaximumHeight(48)
        self.note.setEnabled(False)
        self.note.textChanged.connect(self._on_note_edited)
        layout.addWidget(self.note)
        self._note_timer = QTimer(self)
        self._note_timer.setSingleShot(True)
        self._note_timer.setInterval(NOTE_SAVE_MS)
        self._note_timer.timeout.connect(self.save_note)
        self._note_run: Optional[RunRecord] = None
        self._records: dict[str, RunRecord] = {}
        self._items: dict[str, QTreeWidgetItem] = {}

    def _button(self, text: str, name: str, signal, tip: str) -> QPushButton:
        """A button that emits `signal` with the selected run."""
        button = QPushButton(text)
        button.setObjectName(name)
        button.setToolTip(tip)
        button.clicked.connect(lambda: self._emit_current(signal))
        return button

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
        item = _Row()
        item.setData(0, _KEY, key)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        self.tree.blockSignals(True)
        item.setCheckState(0, Qt.CheckState.Unchecked)
        if first:
            self.tree.insertTopLevelItem(0, item)
        else:
            self.tree.addTopLevelItem(item)
        self.tree.blockSignals(False)
        self._items[key] = item
        self.update_row(rec)

    def remove(self, rec: RunRecord) -> None:
        key = _key(rec.run_dir)
        item = self._items.pop(key, None)
        self._records.pop(key, None)
        if self._note_run is rec:
            self._note_timer.stop()
            self._note_run = None
        if item is not None:
            self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))
            self.ticked_changed.emit()

    def update_row(self, rec: RunRecord) -> None:
        item = self._items.get(_key(rec.run_dir))
        if item is None:
            return
        acc = rec.best_val_acc
        epochs = len(rec.epochs) if rec.epochs else (rec.summary or {}).get("epochs")
        cells = [(rec.name, None), (STATUS_TEXT.get(rec.status, rec.status), _status_rank(rec.status)),
                 ("" if acc is None else f"{acc:.4f}", acc), ("" if epochs in (None, "") else str(epochs),
                                                              None if epochs in (None, "") else int(epochs)),
                 (rec.optimizer, None), ("" if rec.lr is None else f"{rec.lr:g}", rec.lr), (rec.net, None),
                 (rec.dataset, None)]
        self.tree.blockSignals(True)
        for col, (text, sort) in enumerate(cells):
            item.setText(col, text)
            item.setData(col, _SORT, sort)
        item.setToolTip(0, f"{rec.name}\n{rec.run_dir}")
        item.setToolTip(1, rec.message or STATUS_TEXT.get(rec.status, rec.status))
        self.tree.blockSignals(False)
        self._apply_filter()

    def select(self, rec: RunRecord) -> None:
        item = self._items.get(_key(rec.run_dir))
        if item is not None:
            self.tree.setCurrentItem(item)

    def current(self) -> Optional[RunRecord]:
        item = self.tree.currentItem()
        return None if item is None else self._records.get(item.data(0, _KEY))

    def ticked(self) -> list[RunRecord]:
        """The ticked runs, in the list's order."""
        items = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        return [self._records[item.data(0, _KEY)] for item in items if item.checkState(0) == Qt.CheckState.Checked]

    def set_ticked(self, rec: RunRecord, on: bool = True) -> None:
        item = self._items.get(_key(rec.run_dir))
        if item is not None:
            item.setCheckState(0, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def tick_shown(self, on: bool = True) -> None:
        """Tick (or untick) every row the filter shows, with one comparison update."""
        self.tree.blockSignals(True)
        for item in self._items.values():
            if not item.isHidden():
                item.setCheckState(0, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.tree.blockSignals(False)
        self.ticked_changed.emit()

    def shown(self) -> list[RunRecord]:
        """The rows the filter keeps, in the list's order."""
        items = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        return [self._records[item.data(0, _KEY)] for item in items if not item.isHidden()]

    def checkpoints(self) -> list[Path]:
        """best.ckpt (else last.ckpt) of every listed run, for the Draw tab."""
        return [p for rec in self._records.values() if (p := rec.best_checkpoint()) is not None]

    # --- filter ----------------------------------------------------------------------------------

    @Slot()
    def _apply_filter(self) -> None:
        words = self.filter.text().lower().split()
        for item in self._items.values():
            text = " ".join(item.text(col) for col in range(len(COLUMNS))).lower()
            item.setHidden(not all(w in text for w in words))

    # --- notes -----------------------------------------------------------------------------------

    def _show_note(self, rec: Optional[RunRecord]) -> None:
        self.save_note()
        self._note_run = rec
        self.note.blockSignals(True)
        self.note.setPlainText(rec.note() if rec is not None else "")
        self.note.blockSignals(False)
        self.note.setEnabled(rec is not None)

    @Slot()
    def _on_note_edited(self) -> None:
        self._note_timer.start()

    @Slot()
    def save_note(self) -> None:
        """Write the note being edited to its run's folder now (if it changed)."""
        self._note_timer.stop()
        rec = self._note_run
        if rec is None or not rec.run_dir.is_dir():
            return
        text = self.note.toPlainText()
        if text != rec.note():
            rec.save_note(text)

    # --- signals ---------------------------------------------------------------------------------

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _on_current(self, current, _previous) -> None:
        rec = None if current is None else self._records.get(current.data(0, _KEY))
        self._show_note(rec)
        self.selected.emit(rec)

    @Slot(QTreeWidgetItem, int)
    def _on_item_changed(self, _item, column: int) -> None:
        if column == 0:
            self.ticked_changed.emit()

    def _emit_current(self, signal) -> None:
        rec = self.current()
        if rec is not None:
            signal.emit(rec)

    @Slot(object)
    def _context_menu(self, pos) -> None:
        menu = QMenu(self)
        rec = self.current()
        for text, slot, enabled in (
                ("Resume", lambda: self._emit_current(self.resume_requested), rec is not None),
                ("More epochs…", lambda: self._emit_current(self.more_requested), rec is not None),
                ("Copy settings to the form", lambda: self._emit_current(self.copy_requested), rec is not None),
                ("Tick all shown", lambda: self.tick_shown(True), True),
                ("Untick all shown", lambda: self.tick_shown(False), True),
                ("Move to trash", lambda: self._emit_current(self.trash_requested), rec is not None)):
            action = menu.addAction(text)
            action.setEnabled(enabled)
            action.triggered.connect(slot)
        menu.exec(self.tree.viewport().mapToGlobal(pos))


def _status_rank(status: str) -> int:
    return STATUSES.index(status) if status in STATUSES else len(STATUSES)


def _key(run_dir: Path | str) -> str:
    return str(Path(run_dir).resolve())
