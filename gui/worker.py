"""Background work for the desktop app: the Trainer in a QThread, and the heavy imports.

    worker = TrainWorker(config, ckpt_path=None)      # parent-less QObject
    thread = QThread(); worker.moveToThread(thread)
    thread.started.connect(worker.run); worker.done.connect(thread.quit)
    worker.epoch.connect(window.on_epoch)            # connect to @Slot methods, never lambdas
    thread.start(); ...; worker.request_stop()       # from the GUI thread

lit_opt knows nothing of Qt: the run's live stream (lit_opt/stream.py) calls a listener in
the training thread with plain data (numbers, lists, numpy arrays), already batched (a flush
at most every 50 ms), so a fast run never floods the GUI's event loop. `TrainWorker` is the
bridge: its listener turns each batch of step rows and each epoch row into a signal. Signals
carry `object` payloads that Qt queues to the receivers' thread untouched.

`Importer` runs the 5-9 s import of torch and Lightning after the window shows.
"""

from __future__ import annotations

import copy
import threading
import traceback
from typing import Any, Optional

from PySide6.QtCore import QObject, Signal, Slot

# Display-only Trainer settings for runs in the app (not written by the form's Save):
# the progress bar and model summary would only print to the terminal behind the window.
APP_TRAINER_OVERRIDES = {"enable_progress_bar": False, "enable_model_summary": False}


def with_app_overrides(config: dict) -> dict:
    """The config as the app runs it: the user's keys win over the display-only defaults."""
    trainer = {**APP_TRAINER_OVERRIDES, **(config.get("trainer") or {})}
    return {**config, "trainer": trainer}


class Importer(QObject):
    """Import torch, Lightning and the training spine off the GUI thread."""

    ready = Signal(object)  # {"devices": [names of CUDA devices]}
    failed = Signal(str)
    done = Signal()

    @Slot()
    def run(self) -> None:
        try:
            import torch

            import lit_opt.lightning_cli  # noqa: F401  (Lightning, the data module, the model)
            import lit_opt.toy  # noqa: F401

            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            self.ready.emit({"devices": gpus})
        except Exception as exc:  # shown in the window: the app is useless without torch
            traceback.print_exc()
            self.failed.emit(f"Could not load PyTorch/Lightning: {type(exc).__name__}: {exc}")
        finally:
            self.done.emit()


class TrainWorker(QObject):
    """One fit run (or a resume), from `prepare_fit` to the summary, in its own thread.

    Signals, in order: `prepared(run_dir, config)` once the run folder exists; then any
    number of `steps(chunk)` and `epoch(row)`; then exactly one of `finished(summary)`,
    `stopped(message)` or `failed(message)`; then `done()`.

    A `steps` chunk is {"rows": [the stream's step rows], "batches_per_epoch", "max_epochs",
    "batch_size", "elements"}; an epoch row is the stream's (epochs.csv keys, "val/confusion",
    "weights").
    """

    prepared = Signal(str, object)
    steps = Signal(object)
    epoch = Signal(object)
    finished = Signal(object)
    stopped = Signal(str)
    failed = Signal(str)
    steered = Signal(object)  # every steering change so far (lit_opt/steering.py), when one lands
    done = Signal()

    def __init__(self, config: dict, ckpt_path: Optional[str] = None):
        super().__init__()  # no parent: it is moved to its own thread
        self.config, self.ckpt_path = config, ckpt_path
        self.job = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._paused = False
        self._progress: dict[str, Any] = {}

    # --- GUI thread ----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Thread-safe: end the run after the current batch (before training: do not start)."""
        self._stop.set()
        with self._lock:
            if self.job is not None:
                self.job.request_stop()

    def set_paused(self, paused: bool) -> None:
        """Thread-safe: wait after the current batch (True) or go on (False)."""
        with self._lock:
            self._paused = paused
            if self.job is not None:
                self.job.pause() if paused else self.job.resume()

    def step_once(self) -> None:
        """Thread-safe, while paused: train exactly one more batch."""
        with self._lock:
            if self.job is not None:
                self.job.step_once()

    def steer(self, change: dict) -> None:
        """Thread-safe: the change applies from the step the next batch starts at; ConfigError
        (LitOptError) when this optimizer lacks a value or the run has not started training."""
        from lit_opt.errors import ConfigError

        with self._lock:
            if self.job is None:
                raise ConfigError("the run is still loading its data: apply the change once it trains")
            self.job.steer(**change)

    # --- worker thread -------------------------------------------------------------------

    @Slot()
    def run(self) -> None:
        from lit_opt.errors import LitOptError, RunStopped

        try:
            from lit_opt.jobs import prepare_fit

            job = prepare_fit(with_app_overrides(self.config), ckpt_path=self.ckpt_path,
                              listeners=[_Forward(self)])
            with self._lock:
                self.job = job
                if self._paused:  # Pause pressed while the data loaded
                    job.pause()
            config = copy.deepcopy(job.config)
            # The data module's class names and input shape, as the checkpoint records them.
            config.setdefault("model", {})["data_info"] = copy.deepcopy(dict(job.model.hparams.data_info))
            self.prepared.emit(str(job.run_dir), config)
            if self._stop.is_set():
                from lit_opt.runs import remove_if_unused

                job.release()
                remove_if_unused(job.run_dir)
                raise RunStopped("Stopped before training started.")
            summary = job.run()
            self.finished.emit(summary)
        except RunStopped as exc:
            where = getattr(exc, "run_dir", None)
            keep = f" The run resumes from {where}/last.ckpt." if where else ""
            self.stopped.emit(f"{exc}{keep}")
        except LitOptError as exc:
            self.failed.emit(str(exc))
        except SystemExit as exc:  # jsonargparse's way to refuse a config, and Lightning's SIGTERM
            self.failed.emit(f"The run ended early (exit code {exc.code}); see the terminal for details.")
        except BaseException as exc:  # a bug or an unforeseen input: still a message, not a crash
            traceback.print_exc()
            self.failed.emit(f"Unexpected error ({type(exc).__name__}): {exc}")
        finally:
            if self.job is not None:  # however the run ended, other processes may use its folder
                self.job.release()
            self.done.emit()

    def _on_start(self, info: dict) -> None:
        self._progress = {k: info[k] for k in ("batches_per_epoch", "max_epochs", "batch_size", "elements")}

    def _on_steps(self, rows: list[dict]) -> None:
        # A Stop pressed before the job existed (while torch or the data loaded) is handed on
        # here; the stream runs before StopOnRequest's check, so the run ends after this batch.
        if self._stop.is_set():
            self.job.request_stop()
        self.steps.emit({"rows": rows, **self._progress})

    def _on_epoch(self, row: dict) -> None:
        self.epoch.emit(row)


class _Forward:
    """The worker's listener of the run's live stream (lit_opt.stream.Listener's methods)."""

    def __init__(self, worker: TrainWorker):
        self.on_start, self.on_steps, self.on_epoch = worker._on_start, worker._on_steps, worker._on_epoch
        self.on_steer = worker.steered.emit


class LrFindWorker(QObject):
    """Lightning's learning-rate range test on the form's config (lit_opt/lr_find.py), in its
    own thread: `found(result)` or `failed(message)`, then `done()`."""

    found = Signal(object)
    failed = Signal(str)
    done = Signal()

    def __init__(self, config: dict, num_training: int = 100):
        super().__init__()
        self.config, self.num_training = config, num_training

    @Slot()
    def run(self) -> None:
        from lit_opt.errors import LitOptError

        try:
            from lit_opt.lr_find import find_lr

            self.found.emit(find_lr(with_app_overrides(self.config), num_training=self.num_training))
        except LitOptError as exc:
            self.failed.emit(str(exc))
        except SystemExit as exc:
            self.failed.emit(f"The learning-rate finder ended early (exit code {exc.code}).")
        except BaseException as exc:  # still a message, never a crash
            traceback.print_exc()
            self.failed.emit(f"Unexpected error in the learning-rate finder ({type(exc).__name__}): {exc}")
        finally:
            self.done.emit()
