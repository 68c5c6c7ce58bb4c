"""The main window: run form and run list on the left, live views in tabs on the right.

    window = MainWindow(runs_root="checkpoints"); window.show()
    window.start()        # the form's config, in a background QThread
    window.stop()         # ends after the current batch, keeping a resumable last.ckpt

The window shows at once; torch and Lightning load in a background thread (`Importer`),
with "Loading PyTorch…" in the status bar until `ready` fires. Training runs in a
`TrainWorker` moved to its own QThread; its signals arrive at this window's @Slot methods
in the GUI thread, which update the run's `RunRecord`, and a 20 Hz timer redraws what
changed: whatever the training speed, at most ~20 redraws a second.
"""

from __future__ import annotations

import collections
import gc
import time
import traceback
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QThread, QTimer, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QProgressBar, QPushButton,
                               QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from gui.comparison import steering_text
from gui.records import RunRecord
from lit_opt.run_files import find_run_folders
from gui.views import RunView, views
from gui.views.confusion import ConfusionView
from gui.views.curves import CurvesView
from gui.widgets.playground import Playground
from gui.widgets.run_form import FormError, RunForm
from gui.widgets.run_list import RunList
from gui.widgets.steer_box import SteerBox
from gui.views.weights import WeightsView
from gui.worker import Importer, LrFindWorker, TrainWorker

REDRAW_MS = 50  # at most 20 redraws a second
# ... and at most this share of the time spent drawing: painting runs Python (pyqtgraph)
# under the GIL the training thread needs, so a slow machine gets fewer, not slower, frames.
REDRAW_DUTY = 0.05
MAX_REDRAW_MS = 1000
_ERROR_STYLE = "QLabel { background: #fde2e1; color: #8a1c13; border: 1px solid #e8a5a0; padding: 6px; }"
_INFO_STYLE = "QLabel { background: #e8f1fb; color: #163d66; border: 1px solid #a9c7e8; padding: 6px; }"


class MainWindow(QMainWindow):
    ready = Signal()  # torch and Lightning are imported: runs can start
    run_finished = Signal(object)  # RunRecord: its thread has ended (finished, stopped or failed)

    def __init__(self, runs_root: Optional[str | Path] = None, config: Optional[dict] = None,
                 load_in_background: bool = True):
        super().__init__()
        self.setWindowTitle("lit_opt: optimizers at work")
        self.resize(1440, 900)
        self.is_ready = False
        self._thread: Optional[QThread] = None
        self._worker: Optional[TrainWorker] = None
        self._import_thread: Optional[QThread] = None
        self._importer: Optional[Importer] = None
        self._lr_thread: Optional[QThread] = None
        self._lr_worker: Optional[LrFindWorker] = None
        self.lr_dialog = None  # the finder's last result (gui/widgets/lr_finder.py)
        self._close_pending = False
        self.running: Optional[RunRecord] = None  # the run in the worker thread
        self.is_paused = False
        self.shown: Optional[RunRecord] = None  # the run the views show
        self._dirty = False
        self._progress: dict = {}
        self._rate: collections.deque = collections.deque(maxlen=200)  # (time, batches done)
        self.draw_tab = None

        self.form = RunForm()
        if config:
            self.form.load_config(config)
        if runs_root is not None:
            self.form._fields["run.root"].set_value(str(runs_root))
        self._build()
        self._build_menus()

        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._redraw)
        self._timer.start()
        self.form.error_message.connect(self.show_error)
        self.form.info_message.connect(self._on_form_info)
        self.set_status("Loading PyTorch and Lightning…", busy=True)
        self._update_buttons()
        QTimer.singleShot(0, self.rescan)
        if load_in_background:
            QTimer.singleShot(50, self._start_import)  # after the first paint

    # --- layout --------------------------------------------------------------------------------

    def _build(self) -> None:
        left = QSplitter(Qt.Orientation.Vertical)
        scroll = QScrollArea()
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(400)
        left.addWidget(scroll)
        controls = QWidget()
        row = QHBoxLayout(controls)
        row.setContentsMargins(4, 4, 4, 4)
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("start")
        self.start_button.setToolTip("train with the form's settings (a new run folder)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stop")
        self.stop_button.setToolTip("end after the current batch, keeping a last.ckpt that resumes")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.lr_find_button = QPushButton("Find lr…")
        self.lr_find_button.setObjectName("lr_find")
        self.lr_find_button.setToolTip("Lightning's learning-rate range test on the form's settings (100 batches, "
                                       "the rate rising from 1e-6 to 1); nothing is saved")
        self.lr_find_button.clicked.connect(self.find_lr)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("wait after the current batch; the views stay live (press again to continue)")
        self.pause_button.toggled.connect(self.set_paused)
        self.step_button = QPushButton("Step")
        self.step_button.setObjectName("step")
        self.step_button.setToolTip("while paused: train exactly one more batch")
        self.step_button.clicked.connect(self.step_once)
        row.addWidget(self.start_button)
        row.addWidget(self.pause_button)
        row.addWidget(self.step_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.lr_find_button)
        self.steer_box = SteerBox()
        self.steer_box.apply_requested.connect(self.steer)
        self.steer_box.invalid.connect(self.show_error)
        self.run_list = RunList()
        self.run_list.selected.connect(self._on_selected)
        self.run_list.ticked_changed.connect(self._on_ticked)
        self.run_list.resume_requested.connect(self.resume)
        self.run_list.copy_requested.connect(self.copy_settings)
        self.run_list.more_requested.connect(self.ask_more_epochs)
        self.run_list.trash_requested.connect(self.trash)
        self.run_list.rescan_requested.connect(self.rescan)
        runs_box = QWidget()
        runs_layout = QVBoxLayout(runs_box)
        runs_layout.setContentsMargins(0, 0, 0, 0)
        runs_layout.addWidget(controls)
        runs_layout.addWidget(self.steer_box)
        runs_layout.addWidget(QLabel("Runs (select to show, tick to compare):"))
        runs_layout.addWidget(self.run_list, 1)
        left.addWidget(runs_box)
        left.setSizes([470, 430])  # the form's Run group and the run list both in view at 1280x800

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        self.message = QLabel("")
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        self._message_run: Optional[RunRecord] = None  # the run a message is about
        self.tabs = QTabWidget()
        self.views: list[RunView] = views()  # every run view in gui/views/, in its order
        for view in self.views:
            self.tabs.addTab(view, view.tab_title)
        self.tabs.currentChanged.connect(self._on_tab)
        self.playground = Playground()
        self.tabs.addTab(self.playground, "Playground")
        right_layout.addWidget(self.tabs, 1)
        right_layout.addWidget(self.message)  # below the views: the tab bar stays where it is

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([520, 920])
        self.setCentralWidget(split)

        self.status_line = QLabel("")
        self.status_line.setObjectName("status_line")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(140)
        self.statusBar().addWidget(self.status_line, 1)
        self.statusBar().addPermanentWidget(self.busy)

    @Slot(int)
    def _on_tab(self, _index: int) -> None:
        shown = self.tabs.currentWidget()
        if isinstance(shown, RunView):
            shown.refresh()

    def refresh_views(self) -> None:
        """Bring every view up to date, shown or not (a run's end, a test reading a view)."""
        for view in self.views:
            view.refresh()

    def view(self, cls: type) -> RunView:
        return next(v for v in self.views if isinstance(v, cls))

    @property
    def curves(self) -> CurvesView:
        return self.view(CurvesView)

    @property
    def weights(self) -> WeightsView:
        return self.view(WeightsView)

    @property
    def confusion(self) -> ConfusionView:
        return self.view(ConfusionView)

    def _build_menus(self) -> None:
        file = self.menuBar().addMenu("&File")
        for text, slot, key in (("&Load config…", self.form._ask_load, QKeySequence.StandardKey.Open),
                                ("&Save config…", self.form._ask_save, QKeySequence.StandardKey.Save),
                                ("&Resume from checkpoint…", self._ask_resume, None),
                                ("&Quit", self.close, QKeySequence.StandardKey.Quit)):
            action = QAction(text, self)
            if key is not None:
                action.setShortcut(key)
            action.triggered.connect(slot)
            file.addAction(action)
        runs = self.menuBar().addMenu("&Runs")
        for text, slot in (("&Start", self.start), ("S&top", self.stop), ("Rescan runs folder", self.rescan)):
            action = QAction(text, self)
            action.triggered.connect(slot)
            runs.addAction(action)

    # --- messages and status -------------------------------------------------------------------

    @Slot(str)
    def show_error(self, text: str, about: Optional[RunRecord] = None) -> None:
        """A red message; `about`: the run it concerns (it goes when another run is selected)."""
        self.message.setStyleSheet(_ERROR_STYLE)
        self.message.setText(text)
        self.message.show()
        self._message_run = about

    def show_info(self, text: str, about: Optional[RunRecord] = None) -> None:
        self.message.setStyleSheet(_INFO_STYLE)
        self.message.setText(text)
        self.message.show()
        self._message_run = about

    def clear_message(self) -> None:
        self.message.hide()
        self.message.setText("")
        self._message_run = None

    def set_status(self, text: str, busy: bool = False) -> None:
        self.status_line.setText(text)
        self.busy.setVisible(busy)

    # --- background import ---------------------------------------------------------------------

    @Slot()
    def _start_import(self) -> None:
        self._import_thread = QThread()
        self._importer = Importer()
        self._importer.moveToThread(self._import_thread)
        self._import_thread.started.connect(self._importer.run)
        self._importer.ready.connect(self._on_ready)
        self._importer.failed.connect(self._on_import_failed)
        self._importer.done.connect(self._import_thread.quit, Qt.ConnectionType.DirectConnection)
        self._import_thread.finished.connect(self._on_import_thread_finished)
        self._import_thread.start()

    @Slot(object)
    def _on_ready(self, info: dict) -> None:
        self.is_ready = True
        self.form.set_gpus(info.get("devices", []))
        self.playground.set_ready()
        self._add_draw_tab()
        self.set_status("Ready." + (f" GPUs: {', '.join(info['devices'])}" if info.get("devices") else
                                    " Training on the CPU."))
        self._update_buttons()
        if self.shown is not None:
            self._show(self.shown)
        self.ready.emit()

    @Slot(str)
    def _on_import_failed(self, text: str) -> None:
        self.set_status("PyTorch could not be loaded.")
        self.show_error(text)

    @Slot()
    def _on_import_thread_finished(self) -> None:
        if self._import_thread is not None:
            self._import_thread.wait()
        self._import_thread = self._importer = None
        if self._close_pending:
            QTimer.singleShot(0, self.close)

    def _add_draw_tab(self) -> None:
        """The Draw tab (gui/widgets/draw.py), when it exists: classify digits you draw."""
        try:
            from gui.widgets.draw import DrawTab
        except ImportError:
            return
        try:
            self.draw_tab = DrawTab()
        except Exception:  # a broken tab must not take the app down
            traceback.print_exc()
            return
        self.tabs.addTab(self.draw_tab, "Draw")
        self._feed_draw()

    def _feed_draw(self) -> None:
        if self.draw_tab is not None:
            try:
                self.draw_tab.set_checkpoints(self.run_list.checkpoints())
            except Exception:
                traceback.print_exc()

    # --- runs ----------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    @Slot()
    def start(self) -> None:
        """Start a run with the form's settings."""
        try:
            config = self.form.to_config()
        except FormError as exc:
            self.show_error(f"Please fix the form:\n{exc}")
            return
        self._launch(config, None)

    @Slot(object)
    def resume(self, rec: RunRecord) -> None:
        """Continue a run from its last.ckpt, in its own folder, with its own config."""
        ckpt = rec.checkpoint()
        if ckpt is None:
            self.show_error(f"{rec.name} has no last.ckpt to resume from.")
            return
        self.resume_checkpoint(ckpt)

    @Slot(object)
    def ask_more_epochs(self, rec: RunRecord) -> None:
        from PySide6.QtWidgets import QInputDialog

        n, ok = QInputDialog.getInt(self, "More epochs", f"Train {rec.name} for how many more epochs?", 5, 1, 10_000)
        if ok:
            self.more_epochs(rec, n)

    def more_epochs(self, rec: RunRecord, n: int) -> None:
        """Train a finished or stopped run `n` epochs past the last it completed, in its own
        folder, its curves continuing (as `fit --ckpt_path RUN/last.ckpt --more_epochs n`)."""
        ckpt = rec.checkpoint()
        if ckpt is None:
            self.show_error(f"{rec.name} has no last.ckpt to continue from.", about=rec)
            return
        from lit_opt.run_files import read_epochs

        done = len([row for row in read_epochs(rec.run_dir) if row.get("epoch") is not None])
        self.resume_checkpoint(ckpt, max_epochs=done + n)

    def resume_checkpoint(self, ckpt: str | Path, max_epochs: Optional[int] = None) -> None:
        ckpt = Path(ckpt)
        config = {}
        if (ckpt.parent / "config.yaml").is_file():
            # A run folder may come from anyone: its config is used only if it is plain settings.
            from lit_opt.errors import ConfigError
            from lit_opt.found_config import read_found_config

            try:
                config = read_found_config(ckpt.parent / "config.yaml")
            except ConfigError as exc:
                self.show_error(str(exc))
                return
        if not config:  # a checkpoint outside a run folder: the form's settings, a new folder
            try:
                config = self.form.to_config()
            except FormError as exc:
                self.show_error(f"Please fix the form:\n{exc}")
                return
        config.pop("ckpt_path", None)
        if max_epochs is not None:
            config["trainer"] = {**(config.get("trainer") or {}), "max_epochs": int(max_epochs)}
        self._launch(config, str(ckpt))

    @Slot()
    def _ask_resume(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Resume from checkpoint", "checkpoints", "Checkpoints (*.ckpt)")
        if path:
            self.resume_checkpoint(path)

    def _launch(self, config: dict, ckpt_path: Optional[str]) -> None:
        if self.is_running:
            self.show_error("A run is already going: stop it first.")
            return
        if self._lr_thread is not None:
            self.show_error("The learning-rate finder is going: start when it ends.")
            return
        if not self.is_ready:
            self.show_error("PyTorch is still loading: start again in a moment.")
            return
        self.clear_message()
        self._progress, self._rate = {}, collections.deque(maxlen=200)
        self._thread = QThread()
        self._worker = TrainWorker(config, ckpt_path)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.prepared.connect(self._on_prepared)
        self._worker.steps.connect(self._on_steps)
        self._worker.epoch.connect(self._on_epoch)
        self._worker.finished.connect(self._on_finished)
        self._worker.stopped.connect(self._on_stopped)
        self._worker.failed.connect(self._on_failed)
        self._worker.steered.connect(self._on_steered)
        # Direct: QThread.quit is thread-safe, and queued it would wait for the GUI thread's event
        # loop, which shutdown() blocks (the thread then outlived every wait by its timeout).
        self._worker.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._on_thread_finished)
        self._thread.start()
        self.set_status("Preparing the run: loading data…", busy=True)
        self._update_buttons()

    @Slot()
    def find_lr(self, num_training: int = 100) -> None:
        """The learning-rate range test on the form's settings, in the background; its plot
        opens in a dialog whose "Use suggested lr" fills the form's lr."""
        if self.is_running or self._lr_thread is not None:
            self.show_error("A run or a learning-rate test is going: wait for it to end.")
            return
        if not self.is_ready:
            self.show_error("PyTorch is still loading: try again in a moment.")
            return
        try:
            config = self.form.to_config()
        except FormError as exc:
            self.show_error(f"Please fix the form:\n{exc}")
            return
        self.clear_message()
        self._lr_thread = QThread()
        self._lr_worker = LrFindWorker(config, num_training)
        self._lr_worker.moveToThread(self._lr_thread)
        self._lr_thread.started.connect(self._lr_worker.run)
        self._lr_worker.found.connect(self._on_lr_found)
        self._lr_worker.failed.connect(self.show_error)
        self._lr_worker.done.connect(self._lr_thread.quit, Qt.ConnectionType.DirectConnection)
        self._lr_thread.finished.connect(self._on_lr_thread_finished)
        self._lr_thread.start()
        self.set_status(f"Finding a learning rate: {num_training} batches, the rate rising…", busy=True)
        self._update_buttons()

    @Slot(object)
    def _on_lr_found(self, result: dict) -> None:
        from gui.widgets.lr_finder import LrFinderDialog

        self.lr_dialog = LrFinderDialog(result, self)
        self.lr_dialog.use_lr.connect(self._use_lr)
        self.lr_dialog.show()

    @Slot(float)
    def _use_lr(self, lr: float) -> None:
        if self.form.lr is not None:
            self.form.lr.set_value(float(f"{lr:.3g}"))
            self.set_status(f"lr set to {lr:.3g} from the learning-rate finder.")

    @Slot()
    def _on_lr_thread_finished(self) -> None:
        if self._lr_thread is not None:
            self._lr_thread.wait()
        self._lr_thread = self._lr_worker = None
        if not self.is_running:
            self.set_status("Learning-rate test done." if self.lr_dialog is not None else "Ready.")
        self._update_buttons()
        if self._close_pending:
            QTimer.singleShot(0, self.close)

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        """Pause after the current batch, or continue. While paused the views stay live."""
        if self._worker is None:
            return
        self._worker.set_paused(paused)
        self.is_paused = paused
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(paused)
        self.pause_button.setText("Continue" if paused else "Pause")
        self.pause_button.blockSignals(False)
        self._update_buttons()
        self._dirty = True
        self.set_status(self._status_text() if self._progress else ("Paused." if paused else "Running…"),
                        busy=not paused)

    @Slot()
    @Slot(object)
    def steer(self, change: dict) -> None:
        """Change the running run's lr factor, momentum or weight decay from the next batch on."""
        from lit_opt.errors import LitOptError

        if self._worker is None:
            return
        try:
            self._worker.steer(change)
        except LitOptError as exc:
            self.show_error(f"Not applied: {exc}.", about=self.running)
            return
        self.set_status("Applying " + steering_text(change) + " from the next batch…", busy=not self.is_paused)

    @Slot(object)
    def _on_steered(self, changes: list) -> None:
        rec = self.running
        if rec is None or not changes:
            return
        rec.config.setdefault("run", {})["steering"] = [dict(c) for c in changes]
        last = changes[-1]
        self.show_info(f"Changed from step {last['step']}: {steering_text(last)} (recorded in config.yaml; "
                       f"a resume or fit --config repeats it).", about=rec)
        self._dirty = True

    def step_once(self) -> None:
        """While paused: train exactly one more batch."""
        if self._worker is not None and self.is_paused:
            self._worker.step_once()

    @Slot()
    def stop(self) -> None:
        """End the run after the current batch; its last.ckpt resumes it."""
        if self._worker is not None:
            self._worker.request_stop()
            self.set_status("Stopping after this batch…", busy=True)
            self.stop_button.setEnabled(False)

    @Slot(str, object)
    def _on_prepared(self, run_dir: str, config: dict) -> None:
        rec = self.run_list.record(run_dir)
        if rec is None:
            rec = RunRecord(Path(run_dir), config)
            rec.loaded = True  # filled live
            self.run_list.add(rec, first=True)
        else:  # a resume: keep what is known, continue the curves
            rec.load() if not rec.loaded else None
            rec.config = {**config, "model": {**(rec.config.get("model") or {}), **config.get("model", {})}}
        rec.status = "running"
        self.running = rec
        self.steer_box.set_run(rec.config)
        self.run_list.update_row(rec)
        self.run_list.select(rec)
        self._show(rec)
        self.set_status(f"Running {rec.name}: waiting for the first batch…", busy=True)

    @Slot(object)
    def _on_steps(self, chunk: dict) -> None:
        rec = self.running
        if rec is None:
            return
        self._progress = {k: v for k, v in chunk.items() if k != "rows"}
        rows = chunk["rows"]
        rec.elements.update(chunk.get("elements") or {})
        rec.add_steps(rows)
        last = rows[-1]
        self._rate.append((last["time"], last["batches"]))
        self._progress.update(epoch=last["epoch"], step=last["step"], batch=last["batch"])
        self._dirty = True

    @Slot(object)
    def _on_epoch(self, row: dict) -> None:
        rec = self.running
        if rec is None:
            return
        rec.add_epoch(row)
        self.run_list.update_row(rec)
        self._dirty = True

    @Slot(object)
    def _on_finished(self, summary: dict) -> None:
        rec = self.running
        if rec is None:
            return
        rec.summary, rec.status, rec.message = summary, "finished", ""
        test = f", test accuracy {summary['test/acc']:.4f}" if summary.get("test/acc") is not None else ""
        best = f"best val accuracy {summary['best_val_acc']:.4f}" if summary.get("best_val_acc") is not None else ""
        self.show_info(f"Finished {rec.name}: {summary.get('epochs')} epochs, {best}{test}. "
                       f"Files in {rec.run_dir}", about=rec)

    @Slot(str)
    def _on_stopped(self, text: str) -> None:
        rec = self.running
        if rec is not None:
            rec.status, rec.message = "stopped", text
        self.show_info(text + " Select the run and press 'Resume' to continue it.", about=rec)

    @Slot(str)
    def _on_failed(self, text: str) -> None:
        rec = self.running
        if rec is not None:
            # A divergence leaves diverged.json (lit_opt/callbacks.py); anything else is a failure.
            rec.status = "diverged" if (rec.run_dir / "diverged.json").is_file() else "failed"
            rec.message = text
        self.show_error(text, about=rec)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread, rec = self._thread, self.running
        if thread is not None:
            thread.wait()
        self._thread = self._worker = None
        self.running = None
        if self.is_paused:
            self.is_paused = False
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("Pause")
            self.pause_button.blockSignals(False)
        if rec is not None:
            self.run_list.update_row(rec)
        self._dirty = True
        self._redraw()
        self.refresh_views()
        self._update_buttons()
        done = {"finished": "Finished", "stopped": "Stopped", "failed": "Failed"}.get(
            rec.status if rec else "", "Ended")
        self.set_status(f"{done}: {rec.name}." if rec else "Ready.")
        self._feed_draw()
        self.run_finished.emit(rec)
        if self._close_pending:
            QTimer.singleShot(0, self.close)

    @Slot(str)
    def _on_form_info(self, text: str) -> None:
        self.set_status(text + ".")

    def _update_buttons(self) -> None:
        self.form.set_locked(self.is_running)  # a running run's settings cannot change
        self.start_button.setEnabled(self.is_ready and not self.is_running and self._lr_thread is None)
        self.lr_find_button.setEnabled(self.is_ready and not self.is_running and self._lr_thread is None)
        self.stop_button.setEnabled(self.is_running)
        self.pause_button.setEnabled(self.is_running)
        self.steer_box.setEnabled(self.is_running)
        self.step_button.setEnabled(self.is_running and self.is_paused)
        self.run_list.resume_button.setEnabled(self.is_ready and not self.is_running)
        self.run_list.copy_button.setEnabled(not self.is_running)
        self.run_list.more_button.setEnabled(self.is_ready and not self.is_running)

    # --- showing runs --------------------------------------------------------------------------

    @Slot()
    def rescan(self) -> None:
        """List the run folders under the form's runs folder (run.root)."""
        root = Path(self.form._fields["run.root"].raw() or "checkpoints").expanduser()
        for run_dir in reversed(find_run_folders(root)):
            if self.run_list.record(run_dir) is None:
                self.run_list.add(RunRecord.from_folder(run_dir), first=True)
        self._feed_draw()

    @Slot(object)
    def _on_selected(self, rec: Optional[RunRecord]) -> None:
        if self._message_run is not None and rec is not self._message_run:
            self.clear_message()  # a run's message goes when another run is shown
        self.shown = rec
        if rec is not None:
            self._show(rec)
        else:
            self._show_views()

    @Slot(object)
    def copy_settings(self, rec: RunRecord) -> None:
        """Put a run's settings in the form (its config.yaml, read as plain settings only), with
        a new run name: Start then trains a variant in a new folder."""
        from lit_opt.errors import ConfigError
        from lit_opt.found_config import read_found_config

        try:
            config = read_found_config(rec.run_dir / "config.yaml") if (rec.run_dir / "config.yaml").is_file() \
                else {k: v for k, v in rec.config.items()}
        except ConfigError as exc:
            self.show_error(str(exc), about=rec)
            return
        config.pop("ckpt_path", None)
        config.setdefault("run", {}).pop("name", None)  # a new folder, never the copied run's
        if self.is_running:
            self.show_error("A run is going: its settings stay in the form until it ends.")
            return
        self.form.load_config(config)
        self.show_info(f"Copied {rec.name}'s settings into the form; Start trains them in a new run folder.",
                       about=rec)

    @Slot(object)
    def trash(self, rec: RunRecord) -> None:
        """Move a run's folder into the runs folder's .trash (nothing is deleted)."""
        if rec is self.running:
            self.show_error(f"{rec.name} is training: stop it before moving it to the trash.", about=rec)
            return
        from lit_opt.errors import ConfigError
        from lit_opt.runs import trash_run

        self.run_list.save_note()
        try:
            target = trash_run(rec.run_dir)
        except (ConfigError, OSError) as exc:
            self.show_error(f"{rec.name} was not moved: {exc}", about=rec)
            return
        self.run_list.remove(rec)
        if self.shown is rec:
            self.shown = None
            self._show_views()
        self._feed_draw()
        self.show_info(f"Moved {rec.name} to {target}; move the folder back to restore it.")

    @Slot()
    def _on_ticked(self) -> None:
        self._show_views()

    def _show(self, rec: RunRecord) -> None:
        """Point every view at this run (reading its files first if it is a saved run)."""
        self.shown = rec
        if not rec.loaded and self.is_ready:
            try:
                rec.load()
            except Exception as exc:
                self.show_error(f"Could not read {rec.run_dir}: {exc}")
        self._show_views()

    def _show_views(self) -> None:
        ticked = self.run_list.ticked()
        for rec in ticked:
            if not rec.loaded and self.is_ready:
                rec.load()
        for view in self.views:
            view.show_runs(self.shown, ticked)
        self._dirty = True

    @Slot()
    def _redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        t0 = time.perf_counter()
        # Only the view on screen: a hidden one catches up when its tab is chosen, and every
        # view when a run ends (painting runs Python under the GIL the training thread needs).
        shown = self.tabs.currentWidget()
        if isinstance(shown, RunView):
            shown.refresh()
        if self.running is not None and self._progress:
            self.set_status(self._status_text())
        # What a frame costs: this update, and painting it, which Qt does after this returns
        # (the view's graphics time their own paints: gui/views/graphics.py; the last one is
        # the estimate for this one).
        view = self.tabs.currentWidget()
        graphics = getattr(view, "graphics", None)
        if graphics is not None and graphics.isVisible():
            # The plots' auto-ranges follow the new data now, not during the paint: settled
            # there, they asked for a second paint of every frame.
            graphics.scene().prepareForPaint()
        cost = time.perf_counter() - t0 + getattr(graphics, "last_paint_seconds", 0.0)
        self._timer.setInterval(int(min(max(REDRAW_MS, 1000 * cost / REDRAW_DUTY), MAX_REDRAW_MS)))

    def _status_text(self) -> str:
        p, rec = self._progress, self.running
        nb, epochs = p.get("batches_per_epoch") or 0, p.get("max_epochs") or 0
        parts = [f"epoch {p.get('epoch', 0) + 1}/{epochs or '?'}",
                 f"step {p.get('step', 0)}" + (f"/{nb * epochs}" if nb and epochs else "")]
        speed = left = None
        if len(self._rate) >= 2:
            t_now, n_now = self._rate[-1]
            t0, n0 = next(((t, n) for t, n in self._rate if t_now - t <= 3.0), self._rate[0])
            if t_now > t0 and n_now > n0:
                batches_per_s = (n_now - n0) / (t_now - t0)
                speed = batches_per_s * (p.get("batch_size") or 0)
                if nb and epochs:
                    left = max(nb * epochs - n_now, 0) / batches_per_s
        if speed is not None:
            parts.append(f"{speed:,.0f} samples/s")
        if left is not None:
            parts.append(f"{int(left) // 60}:{int(left) % 60:02d} left")
        parts.append(rec.name if rec else "")
        if self.is_paused:
            parts = [f"Paused at step {p.get('step', 0)} (epoch {p.get('epoch', 0) + 1})", parts[-1]]
        return " · ".join(parts)

    # --- closing -------------------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        """Mid-run: stop after the current batch, wait for last.ckpt, then close."""
        if self.is_running or self._import_thread is not None or self._lr_thread is not None:
            self._close_pending = True
            if self.is_running:
                self.stop()
                self.show_info("Stopping the run and saving last.ckpt before closing…")
            event.ignore()
            return
        self._timer.stop()
        self.playground._timer.stop()
        super().closeEvent(event)

    def dispose(self) -> None:
        """End of the program: stop and wait for the threads, then delete the window's Qt
        objects while Qt is alive (left to Python's exit, they once crashed it)."""
        self.shutdown()
        self._close_pending = False
        self.close()
        self.deleteLater()
        QApplication.processEvents()
        gc.collect()

    def shutdown(self, timeout_ms: int = 60_000) -> None:
        """Stop any run and wait for the threads (blocking): for the end of the program."""
        if self._worker is not None:
            self._worker.request_stop()
        for thread in (self._thread, self._import_thread, self._lr_thread):
            if thread is not None:
                thread.wait(timeout_ms)
        for view in self.views:  # a view computing in its own thread (the landscape)
            if hasattr(view, "wait"):
                view.wait(timeout_ms)
