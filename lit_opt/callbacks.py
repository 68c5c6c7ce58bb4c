"""Lightning callbacks shared by the CLI and the desktop app.

- DivergenceGuard: stops a run whose gradient turns NaN/inf, before the bad step lands.
- StopOnRequest: ends a run after the current batch when asked (Ctrl-C, the app's Stop).
- ThrottledProgressBar: Lightning's terminal bar, redrawn at most 10 times a second.
- EpochSummary: times each epoch, logs train/epoch_time, train/samples_per_sec and
  train/lr, and makes the epoch's row, which the live stream (lit_opt/stream.py) sends.
- RunFiles: writes a run folder's pictures (confusion matrices, weight images), and a
  last.ckpt when a run is stopped or diverges; the stream's own listener writes the CSVs.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, TQDMProgressBar

from lit_opt.errors import DivergenceError, RunStopped
from lit_opt.internals import batches_that_stepped, per_tensor_norms
from lit_opt.optim import estimated_step_size


def _scalar(value) -> Optional[float]:
    if value is None:
        return None
    return float(value.item() if isinstance(value, torch.Tensor) else value)


class DivergenceGuard(Callback):
    """Raise DivergenceError when the gradient norm is not finite, before the optimizer steps.

    A NaN/inf loss gives a NaN/inf gradient, so this one check covers both; the weights
    at that moment are still the last finite ones, and RunFiles saves them as last.ckpt.
    The per-tensor norms it computes are kept for the live stream (`take_norms`), which
    turns them into per-layer gradient norms (lit_opt/diagnostics/grad_norms.py).
    """

    def __init__(self) -> None:
        self._norms: Optional[tuple[list, torch.Tensor]] = None

    def take_norms(self) -> Optional[tuple[list, torch.Tensor]]:
        """(parameters, their gradients' norms) of the latest step, once; None if no step since."""
        norms, self._norms = self._norms, None
        return norms

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        # One norm per tensor (kept for the per-layer series); a NaN/inf anywhere makes its
        # tensor's norm, and so their sum, non-finite. One number read per step: the sum
        # (a third of the cost of isfinite().all() on the vector). Finite norms summing past
        # float32's 3e38 count as divergence too.
        norms = torch.stack(per_tensor_norms([p.grad for p in params]))
        self._norms = (params, norms)
        norm = norms.sum()
        if not math.isfinite(norm):
            suspects = f"the learning rate ({_current_lr(optimizer):g})"
            strategy = getattr(pl_module, "step_strategy", None)
            more = strategy.divergence_suspects(optimizer) if strategy is not None else ""
            if more:
                suspects += f" or {more}"
            raise DivergenceError(
                f"Training diverged in epoch {trainer.current_epoch + 1}, step {trainer.global_step}: the loss or "
                f"its gradient became {float(norm)}. {suspects[0].upper() + suspects[1:]} is probably too "
                f"large for this net and optimizer; try a smaller one.")


def _current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


class PatientEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping, whose patience restarts when a run it ended is trained for
    more epochs (`fit --ckpt_path RUN/last.ckpt --more_epochs N`): restored as it was, it would
    end the run again after the first validation. A run interrupted mid-way (it had not
    stopped it) resumes with its count exactly as it was."""

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if self.stopped_epoch > 0:
            self.wait_count, self.stopped_epoch = 0, 0


class StopOnRequest(Callback):
    """End the run after the current training batch when `request_stop()` is called.

    The first Ctrl-C in a terminal requests the stop (a second one aborts at once), and so
    does SIGTERM, which cluster schedulers send to pre-empt a job. The run ends by raising
    RunStopped from `on_train_batch_end`: no further validation pass, and RunFiles keeps a
    last.ckpt that resumes with the next batch. `signum` records which signal asked.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._previous_handlers: dict = {}
        self.signum: Optional[int] = None
        # Pause (the desktop app): training waits after a batch until continued; `step_once`
        # lets exactly one more batch through. Waiting releases the GIL: the app stays live.
        self._paused = False
        self._granted = 0
        self._wake = threading.Condition()
        self.paused_at: Optional[int] = None  # the global step training waits at, while it waits
        self.before_pause: list = []  # called before waiting (the live stream's flush registers itself)

    def request_stop(self) -> None:
        """Thread-safe: the desktop app calls this from its GUI thread."""
        self._requested.set()
        with self._wake:
            self._wake.notify_all()

    def pause(self) -> None:
        """Thread-safe: wait after the current batch (the views stay live, every series current)."""
        with self._wake:
            self._paused, self._granted = True, 0

    def resume(self) -> None:
        with self._wake:
            self._paused, self._granted = False, 0
            self._wake.notify_all()

    def step_once(self) -> None:
        """While paused: train exactly one more batch, then wait again."""
        with self._wake:
            self._granted += 1
            self._wake.notify_all()

    @property
    def is_paused(self) -> bool:
        return self._paused

    @property
    def stop_requested(self) -> bool:
        return self._requested.is_set()

    def on_train_start(self, trainer, pl_module) -> None:
        # A Stop pressed while data loads or the sanity check runs still counts: the flag is
        # cleared only when a run ends (teardown).
        # Signal handlers can only be installed on the main thread (the app trains elsewhere).
        # They replace Lightning's own SIGTERM handler while training runs: that one only
        # ends the run at the epoch's end, as a SystemExit with code 0.
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            self._previous_handlers = {s: signal.signal(s, self._on_signal) for s in self.SIGNALS}

    def _on_signal(self, signum, frame) -> None:
        again = " (Ctrl-C again to abort at once)" if signum == signal.SIGINT else ""
        print(f"\n{signal.Signals(signum).name}: stopping after this batch and saving last.ckpt{again} ...",
              flush=True)
        self.signum = signum
        self.request_stop()
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self._previous_handlers.get(signal.SIGINT) or signal.default_int_handler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = self._requested.is_set()
        if trainer.world_size > 1:  # Ctrl-C reaches the processes at different batches: agree first
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            by = f" by {signal.Signals(self.signum).name}" if self.signum else ""
            # Epochs are numbered from 1 in every message, as in the status line and the tables.
            raise RunStopped(f"Stopped{by} in epoch {trainer.current_epoch + 1}, step {trainer.global_step}.",
                             signum=self.signum)
        if self._paused and trainer.world_size == 1:  # the app's pause (it never runs DDP)
            self._wait(trainer)

    def _wait(self, trainer) -> None:
        for flush in self.before_pause:  # the views show this very batch while training waits
            flush(trainer)
        with self._wake:
            if not self._paused:
                return
            if self._granted:
                self._granted -= 1
                return
            self.paused_at = trainer.global_step
            while self._paused and not self._granted and not self._requested.is_set():
                self._wake.wait()
            self.paused_at = None
            if self._granted:
                self._granted -= 1
        if self._requested.is_set():  # Stop while paused: end here, exactly as after any batch
            self.on_train_batch_end(trainer, None, None, None, None)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._requested.clear()
        self.resume()
        if self._previous_handlers and threading.current_thread() is threading.main_thread():
            for s, handler in self._previous_handlers.items():
                # Only where ours is still installed: Lightning's own teardown has usually put
                # back the handler from before the fit already, and putting its SIGTERM handler
                # back over that would keep this Trainer (and its model) alive for good.
                if signal.getsignal(s) == self._on_signal:
                    signal.signal(s, handler if handler is not None else signal.SIG_DFL)
            self._previous_handlers = {}


def snapshot(pl_module) -> dict[str, Any]:
    """Copies, as numpy arrays, of what the live views draw: the latest validation confusion
    matrix (rows true, columns predicted) and the weights of every Linear/Conv2d layer."""
    from lit_opt.nets import weight_layers

    cm = getattr(pl_module, "val_confusion_matrix", None)
    return {"val/confusion": None if cm is None else cm.numpy().copy(),
            "weights": {name: layer.weight.detach().float().cpu().numpy().copy()
                        for name, layer in weight_layers(pl_module.net).items()}}


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's terminal progress bar, redrawn at most every `min_interval` seconds (and at
    each loop's last batch). Lightning's default redraws after every batch, which cost a small
    MLP about half its bare step (docs/performance.md); nobody reads a bar hundreds of times a
    second, and a slow net still gets every batch shown. Each redraw shows the latest
    batch's loss (`train/loss_step` is logged only every log_every_n_steps steps)."""

    def __init__(self, min_interval: float = 0.1):
        super().__init__(refresh_rate=1)
        self.min_interval = min_interval
        self._last_draw = float("-inf")

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        loss = getattr(pl_module, "last_train_loss", None)
        if loss is not None and trainer.training:
            metrics["train/loss_step"] = f"{float(loss):.3g}"  # one device sync per redraw
        return metrics

    def _due(self, n: int, bar: str) -> bool:
        try:
            total = getattr(self, bar).total
        except (TypeError, AttributeError):  # that bar does not exist (yet)
            total = None
        now = time.monotonic()
        if n == total or now - self._last_draw >= self.min_interval:
            self._last_draw = now
            return True
        return False

    # Lightning's bar redraws from these hooks after every batch: pass only the due ones on.
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(batch_idx + 1, "train_progress_bar"):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(batch_idx + 1, "val_progress_bar"):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(batch_idx + 1, "test_progress_bar"):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)


class EpochSummary(Callback):
    """Time each epoch's training (validation excluded) and report one row per epoch.

    Row keys: epoch, step, train/loss, train/acc, val/loss, val/acc, train/epoch_time,
    train/samples_per_sec, train/lr (absent values are None), and train/ce, train/l2 when
    model.l2 > 0, and train/d for an optimizer that estimates its own step size (Prodigy's d,
    `lit_opt.optim.estimated_step_size`). `rows` holds them; the live stream sends each,
    with `snapshot(pl_module)` (confusion matrix, weights), to its listeners.
    """

    def __init__(self):
        self._t0 = 0.0
        self._train_seconds: Optional[float] = None
        self._samples = 0
        self._epoch_open = False  # between an epoch's start and its end
        self._step = 0  # the global step after the latest batch (state_dict has no trainer)
        self._restored: Optional[dict] = None
        self.rows: list[dict[str, Any]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        # A run resumed mid-epoch skips on_train_epoch_start for that epoch: start the clock here,
        # counting the time and samples the epoch had before it was interrupted.
        self.on_train_epoch_start(trainer, pl_module)
        state, self._restored = self._restored, None
        if state and state["open"] and state["step"] == trainer.global_step:
            self._t0 -= state["seconds"]
            self._samples = state["samples"]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0, self._train_seconds, self._samples = time.perf_counter(), None, 0
        self._epoch_open = True

    # Saved in every checkpoint (Lightning stores a callback's state_dict under its state_key).
    def state_dict(self) -> dict:
        seconds = self._train_seconds if self._train_seconds is not None else time.perf_counter() - self._t0
        return {"open": self._epoch_open, "step": self._step, "seconds": seconds, "samples": self._samples}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = dict(state_dict)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._samples += len(batch[1])
        self._step = trainer.global_step

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.training and self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._t0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_open = False
        seconds = self._train_seconds if self._train_seconds is not None else time.perf_counter() - self._t0
        lr = _current_lr(trainer.optimizers[0]) if trainer.optimizers else None
        if lr is not None:  # as the next step will use it: with steering's factor
            from lit_opt.steering import steering_callback

            steering = steering_callback(trainer)
            lr *= steering.lr_factor_at(trainer.global_step) if steering is not None else 1.0
        speed = self._samples / max(seconds, 1e-9)
        pl_module.log("train/epoch_time", seconds, on_step=False, on_epoch=True)
        pl_module.log("train/samples_per_sec", speed, on_step=False, on_epoch=True)
        if lr is not None:
            pl_module.log("train/lr", lr, on_step=False, on_epoch=True)
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "train/loss": _scalar(m.get("train/loss_epoch", m.get("train/loss"))),
               "train/acc": _scalar(m.get("train/acc")), "val/loss": _scalar(m.get("val/loss")),
               "val/acc": _scalar(m.get("val/acc")), "train/epoch_time": seconds,
               "train/samples_per_sec": speed, "train/lr": lr}
        if "train/l2" in m:  # the two parts of train/loss, when an L2 penalty is on
            row["train/ce"], row["train/l2"] = _scalar(m.get("train/ce")), _scalar(m["train/l2"])
        d = estimated_step_size(trainer.optimizers[0]) if trainer.optimizers else None
        if d is not None:  # the step size the optimizer estimated (Prodigy's d) at the epoch's end
            row["train/d"] = d
        self.rows.append(row)


class RunFiles(Callback):
    """Write a run folder's pictures and emergency checkpoint (layout in docs/reference.md)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._saved_step = -1  # the global step of the latest checkpoint written

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._saved_step = trainer.global_step

    def on_train_end(self, trainer, pl_module) -> None:
        # Checkpoints come with validation: with validation every k epochs (gd's edge-of-
        # stability runs), the epochs after the last one would be missing from last.ckpt.
        if trainer.global_step != self._saved_step and trainer.global_step > 0:
            trainer.save_checkpoint(self.run_dir / "last.ckpt", weights_only=False)

    def on_train_start(self, trainer, pl_module) -> None:
        # metrics.csv describes exactly the training the checkpoint holds: a resumed run drops
        # rows logged after its checkpoint. Its step is the logger's count of batches, less
        # one. That holds for checkpoints saved at an epoch's end or on a stop (lit_opt's
        # default: validation once per epoch); with validation more or less often, Lightning
        # saves during the last validation, before the epoch's end rows are logged, so
        # metrics.csv is left as it is then. (steps.csv and epochs.csv: lit_opt/stream_files.py.)
        if trainer.is_global_zero and trainer.global_step > 0:
            if trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1:
                logged = batches_that_stepped(trainer)
                keep_rows(self.run_dir / "metrics.csv", lambda row: int(row["step"]) < logged)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._write_pictures(pl_module, "val")

    def on_test_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._write_pictures(pl_module, "test")

    def _write_pictures(self, pl_module, split: str) -> None:
        from lit_opt import artifacts

        cm = getattr(pl_module, f"{split}_confusion_matrix", None)
        if cm is not None:
            artifacts.write_confusion(cm, pl_module.class_names, self.run_dir / f"confusion_{split}")
        if split == "val":
            artifacts.write_first_layer(pl_module.net, pl_module.hparams.data_info["input_shape"],
                                        self.run_dir / "weights.png")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (RunStopped, DivergenceError)):
            return
        exception.run_dir = self.run_dir  # so the message can say where last.ckpt is
        strategy = getattr(pl_module, "step_strategy", None)
        if strategy is not None:  # weights a step moved for a moment (SAM's perturbation) go back
            strategy.restore_weights(trainer.optimizers)
        # Every DDP process sees the same weights and calls save_checkpoint (it ends in a
        # barrier); Lightning writes the file from process 0 only.
        finite = all(torch.isfinite(p).all() for p in pl_module.parameters())
        if finite:  # never replace a good last.ckpt with NaN weights
            trainer.save_checkpoint(self.run_dir / "last.ckpt", weights_only=False)
        if trainer.is_global_zero and isinstance(exception, DivergenceError):
            # Reports (lit_opt report, studies) read this to tell a diverged run from a stopped one.
            (self.run_dir / "diverged.json").write_text(json.dumps(
                {"epoch": trainer.current_epoch, "step": trainer.global_step, "message": str(exception)}) + "\n")
        if trainer.is_global_zero and pl_module.val_confusion_matrix is not None:
            self._write_pictures(pl_module, "val")


def keep_rows(path: Path, keep: Callable[[dict], bool]) -> None:
    """Rewrite a CSV file with only the rows `keep` accepts (atomically; untouched if all are kept)."""
    import os

    if not path.is_file():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [row for row in rows if not row.get("step") or keep(row)]
    if len(kept) == len(rows):
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)
