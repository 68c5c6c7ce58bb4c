"""The live stream: named series from the Trainer to every listener.

    stream = LiveStream(sources=default_sources(), listeners=[RunFolderWriter(run_dir), app])

A *series* has a name ("train/loss", "train/grad_norm"), a level (a value per training batch:
"step", or per epoch: "epoch") and a kind ("scalar", "vector" with named elements such as one
per layer, or "image"). *Sources* (lit_opt/diagnostics/) give step values after every training
batch as tensors left where they are; the stream keeps them and moves them to the host
together, one transfer per flush, so it adds no host-device synchronisation per step. A flush
happens at most every `flush_seconds`, at each epoch's end, before every checkpoint and when
a run ends. *Listeners*, registered at construction, receive plain Python data only, which
is how the desktop app gets its data without lit_opt knowing about Qt:

    on_start(info)   {"run_dir", "batches_per_epoch", "max_epochs", "batch_size",
                      "global_step", "batches" (trained before this start: a resume's point),
                      "series": [step series of this run], "elements": {vector series: [names]},
                      "kinds": {series: "scalar" | "vector" | "histogram"}, "input_shape"}
    on_steps(rows)   [{"batches" (1-based count over the whole run), "step" (global_step),
                       "epoch", "batch", "time" (seconds since training began, validation
                       included, continued across resumes), <series>: value}, ...]
    on_epoch(row)    epochs.csv's keys, "val/confusion" and "weights" (numpy arrays)
    on_steer(changes) every steering change so far ([{"step", "lr_factor", ...}]), when the app
                     changes the learning rate, momentum or weight decay (lit_opt/steering.py)

Listeners run in the training thread. Scalar series that declare `logged_as` also go to the
Trainer's loggers (metrics.csv, TensorBoard) every `log_every_n_steps` batches, through the
loggers' public `log_metrics`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
from lightning.pytorch.callbacks import Callback


@dataclass(frozen=True)
class Series:
    name: str
    level: str = "step"  # "step" (a value per training batch) or "epoch"
    kind: str = "scalar"  # "scalar", "vector" (named elements) or "image"
    label: str = ""  # what it is, for axes and legends
    logged_as: Optional[str] = None  # also handed to the Trainer's loggers under this name


class Source:
    """Gives values of its series after each training batch (and names vector elements)."""

    series: tuple[Series, ...] = ()

    def start(self, trainer, pl_module) -> Optional[dict[str, list[str]]]:
        """Called when training starts; returns the element names of its vector series ({} if
        none), or None when it has nothing to give in this run (it is then left out)."""
        return {}

    def batch_start(self, trainer, pl_module) -> dict[str, Any]:
        """Values as the batch starts, before its step (the learning rate the step will use:
        Lightning steps schedulers before a batch's end hooks)."""
        return {}

    def step(self, trainer, pl_module) -> dict[str, Any]:
        """This batch's values: tensors (left on their device), numbers, or nothing."""
        return {}

    def to_host(self, name: str, values: torch.Tensor) -> list:
        """Values of one series for several rows (stacked on dim 0) as Python lists."""
        return values.tolist()


class Listener:
    """Receives the stream's rows (see the module docstring); override what you need."""

    def on_start(self, info: dict) -> None:
        pass

    def on_steps(self, rows: list[dict]) -> None:
        pass

    def on_epoch(self, row: dict) -> None:
        pass

    def on_steer(self, changes: list[dict]) -> None:
        """The run's steering changes (lit_opt/steering.py), all of them, each time one is
        pinned to its step while training."""


class LiveStream(Callback):
    """The Trainer's end of the stream. Must come after EpochSummary in the callback list
    (it sends that callback's epoch row) and before StopOnRequest (a stopped run's last batch
    is still sent)."""

    def __init__(self, sources: list[Source], listeners: list[Listener], summary=None,
                 run_dir=None, flush_seconds: float = 0.05):
        self.sources, self.listeners, self.summary = list(sources), list(listeners), summary
        self.run_dir = run_dir
        self.flush_seconds = flush_seconds
        self._pending: list[dict] = []
        self._owner: dict[str, Source] = {}
        self._batches = 0
        self._seconds = 0.0  # seconds before this start (a resumed run's)
        self._t0 = 0.0
        self._last_flush = 0.0
        self._restored: Optional[dict] = None
        self._active = False
        self._running: list[Source] = []
        self._starters: list[Source] = []
        self._early: dict[str, Any] = {}
        self._stopped_at = -1

    # Saved in every checkpoint, so a resumed run continues the count and trims its files.
    def state_dict(self) -> dict:
        return {"batches": self._batches, "seconds": self._elapsed()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = dict(state_dict)

    def _elapsed(self) -> float:
        return self._seconds + (time.perf_counter() - self._t0 if self._active else 0.0)

    def on_train_start(self, trainer, pl_module) -> None:
        self._active = trainer.is_global_zero  # listeners live in process 0 only
        if not self._active:
            return
        state, self._restored = self._restored, None
        from lit_opt.internals import batches_that_stepped

        # A checkpoint from before the stream existed: the logger's count is the same number
        # (one per batch) without gradient accumulation.
        self._batches = int(state["batches"]) if state else batches_that_stepped(trainer)
        self._seconds = float(state["seconds"]) if state else 0.0
        self._t0 = self._last_flush = time.perf_counter()
        for cb in trainer.callbacks:  # a paused run shows its latest batch (StopOnRequest.pause)
            if hasattr(cb, "before_pause") and self.flush not in cb.before_pause:
                cb.before_pause.append(self.flush)
        elements: dict[str, list[str]] = {}
        self._running = []  # the sources with something to give in this run
        for source in self.sources:
            got = source.start(trainer, pl_module)
            if got is not None:
                self._running.append(source)
                elements.update(got)
        self._owner = {s.name: source for source in self._running for s in source.series}
        self._starters = [s for s in self._running if type(s).batch_start is not Source.batch_start]
        datamodule = getattr(trainer, "datamodule", None)
        info = {"run_dir": str(self.run_dir or ""),
                "batches_per_epoch": int(trainer.num_training_batches),
                "max_epochs": int(trainer.max_epochs or 0),
                "batch_size": int(getattr(datamodule, "batch_size", 0) or 0),
                "global_step": int(trainer.global_step), "batches": self._batches,
                "series": list(self._owner), "elements": elements,
                "kinds": {s.name: s.kind for source in self._running for s in source.series},
                "input_shape": list((getattr(pl_module.hparams, "data_info", None) or {}).get("input_shape") or [])}
        for listener in self.listeners:
            listener.on_start(info)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._active:
            self._early = {}
            for source in self._starters:
                self._early.update(source.batch_start(trainer, pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._active:
            return
        self._batches += 1
        row = {"batches": self._batches, "step": trainer.global_step, "epoch": trainer.current_epoch,
               "batch": batch_idx, "time": self._elapsed(), **self._early}
        for source in self._running:
            row.update(source.step(trainer, pl_module))
        self._pending.append(row)
        if trainer.should_stop:  # a callback (Timer, a test) ends the run: log this batch too,
            self._stopped_at = self._batches  # as Lightning logs the batch a run stops at
        if time.perf_counter() - self._last_flush >= self.flush_seconds:
            self.flush(trainer)

    def flush(self, trainer=None) -> None:
        """Move the pending rows' values to the host (one transfer per series) and send them."""
        self._last_flush = time.perf_counter()
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        tensors: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            for key, value in row.items():
                if isinstance(value, torch.Tensor):
                    tensors.setdefault(key, []).append(i)
        for key, where in tensors.items():
            stacked = torch.stack([rows[i][key].detach() for i in where]).float().cpu()
            owner = self._owner.get(key)
            values = owner.to_host(key, stacked) if owner is not None else stacked.tolist()
            for i, value in zip(where, values):
                rows[i][key] = value
        if trainer is not None:
            self._log(trainer, rows)
        for listener in self.listeners:
            listener.on_steps(rows)

    def _log(self, trainer, rows: list[dict]) -> None:
        """Scalar series with `logged_as`, on the batches Lightning's own logging would write
        (every log_every_n_steps), at the step number Lightning gives its loggers."""
        every = max(int(trainer.log_every_n_steps or 1), 1)
        logged = [(s.name, s.logged_as) for source in self._running for s in source.series if s.logged_as]
        if not trainer.loggers or not logged:
            return
        wrote = False
        for row in rows:
            if row["batches"] % every and row["batches"] != self._stopped_at:
                continue
            metrics = {as_: row[name] for name, as_ in logged if row.get(name) is not None}
            if not metrics:
                continue
            metrics["epoch"] = row["epoch"]  # as Lightning adds to every logged row
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=row["batches"] - 1)
            wrote = True
        if wrote:
            for logger in trainer.loggers:
                logger.save()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._active:
            return
        self.flush(trainer)
        if self.summary is None or not self.summary.rows:
            return
        from lit_opt.callbacks import snapshot

        row = {**self.summary.rows[-1], **snapshot(pl_module)}
        for listener in self.listeners:
            listener.on_epoch(row)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self._active:  # the files hold every step the checkpoint holds
            self.flush(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._active:
            self.flush(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._active:
            self.flush(trainer)
