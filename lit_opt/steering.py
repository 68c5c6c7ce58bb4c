"""Steering a run while it trains: the learning rate, momentum and weight decay from a step on.

A change is `{"step": s, "lr_factor": f, "momentum": m, "weight_decay": w}` (any of the three
values; `step` is the optimizer step it first applies to, the one that takes global_step from s
to s + 1). It holds until a later change replaces that value.

- The learning rate is steered as a *factor* on whatever the optimizer's groups hold: the
  value set in the config, or the schedule's value at that step. OneCycle, cosine and step
  schedules set the rate absolutely every step, so an absolute change would be overwritten;
  a factor multiplies the scheduled value from that step on, and without a schedule it is the
  same as setting the value (the app turns a typed rate into the factor). Groups keep their
  ratios (Muon's AdamW part, lr-find's groups).
- Momentum (SGD's `momentum`, the first of Adam-like `betas`) and weight decay (the groups that
  decay: those with a positive weight_decay, or the first group when none has one: the weights'
  group, lit_opt/optim/decay.py) are set absolutely.

All three are applied just before each optimizer step and put back right after it, with
torch's public `register_step_pre_hook`/`register_step_post_hook`: schedulers (which read and
write the groups, OneCycle's momentum cycle included) never see a steered value, and every
strategy (automatic steps, gd's one step per epoch, SAM's closure step) is steered the same way.

Where a change is recorded: in every checkpoint (this callback's state, so a resumed run
applies it again), and in the run folder's config.yaml as `run.steering` (the files listener
rewrites it, lit_opt/stream_files.py), so `fit --config RUN/config.yaml` repeats what the app
did. A change asked for while the run trains (`request`, thread-safe: the app's GUI thread) is
pinned to the step the next training batch starts at.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Optional

from lightning.pytorch.callbacks import Callback

from lit_opt.errors import ConfigError

VALUES = ("lr_factor", "momentum", "weight_decay")


def check_change(change: Any, where: str = "run.steering") -> dict:
    """A change as plain numbers, or ConfigError naming what is wrong and what is allowed."""
    if not isinstance(change, dict):
        raise ConfigError(f"{where}: each change is a mapping such as {{step: 100, lr_factor: 0.5}}, "
                          f"not {change!r}")
    unknown = sorted(set(change) - {"step", *VALUES})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; a change has step and any of "
                          f"{', '.join(VALUES)}")
    step = change.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"{where}: step must be a whole number >= 0 (the optimizer step the change "
                          f"first applies to), not {step!r}")
    out: dict = {"step": step}
    for key in VALUES:
        if change.get(key) is None:
            continue
        value = change[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be a number, not {value!r}")
        value = float(value)
        if key == "lr_factor" and value <= 0:
            raise ConfigError(f"{where}: lr_factor must be > 0 (it multiplies the learning rate), not {value:g}")
        if key == "momentum" and not 0.0 <= value < 1.0:
            raise ConfigError(f"{where}: momentum must be in [0, 1), not {value:g}")
        if key == "weight_decay" and value < 0:
            raise ConfigError(f"{where}: weight_decay must be >= 0, not {value:g}")
        out[key] = value
    if len(out) == 1:
        raise ConfigError(f"{where}: the change at step {step} sets nothing; give any of {', '.join(VALUES)}")
    return out


def merge(*lists: list[dict]) -> list[dict]:
    """Changes from several records (config, checkpoint, the app) as one list by step; a later
    record's value wins where two set the same value at the same step."""
    by_step: dict[int, dict] = {}
    for changes in lists:
        for change in changes or []:
            by_step.setdefault(change["step"], {"step": change["step"]}).update(change)
    return [by_step[s] for s in sorted(by_step)]


def steerable(optimizer) -> dict[str, bool]:
    """Which values this optimizer has: the app enables only those fields."""
    groups = optimizer.param_groups
    return {"lr_factor": True,
            "momentum": any("momentum" in g or "betas" in g for g in groups),
            "weight_decay": any("weight_decay" in g for g in groups)}


class Steering(Callback):
    def __init__(self, changes: Optional[list] = None, listeners: tuple = ()):
        self.changes = merge([check_change(c, f"run.steering[{i}]") for i, c in enumerate(changes or [])])
        self.listeners = list(listeners)  # told of each change pinned while training (on_steer)
        self._requested: list[dict] = []
        self._lock = threading.Lock()
        self._trainer = None
        self._handles: list = []
        self._saved: list[tuple[dict, str, Any]] = []

    # -- asking, from any thread --------------------------------------------------------------
    def request(self, **values) -> None:
        """Apply these values from the step the next training batch starts at."""
        change = check_change({"step": 0, **values}, "steering")  # checked now, pinned later
        del change["step"]
        if self._trainer is not None and self._trainer.optimizers:
            have = steerable(self._trainer.optimizers[0])
            missing = [k for k in change if not have[k]]
            if missing:
                name = type(self._trainer.optimizers[0]).__name__
                raise ConfigError(f"{name} has no {' or '.join(missing)} to change")
        with self._lock:
            self._requested.append(change)

    # -- what holds at a step ------------------------------------------------------------------
    def values_at(self, step: int) -> dict:
        """The steered values in force for the optimizer step `step` ({} when none)."""
        values: dict = {}
        for change in self.changes:
            if change["step"] > step:
                break
            values.update({k: v for k, v in change.items() if k != "step"})
        return values

    def lr_factor_at(self, step: int) -> float:
        return self.values_at(step).get("lr_factor", 1.0)

    # -- the Trainer's side ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"changes": [dict(c) for c in self.changes]}

    def load_state_dict(self, state_dict: dict) -> None:
        # The checkpoint's changes and the config's: the same run's record, so they agree; a
        # repeat from a config that holds more (the app steered the later run further) has them all.
        self.changes = merge(state_dict.get("changes") or [], self.changes)

    def on_train_start(self, trainer, pl_module) -> None:
        self._trainer = trainer
        self._handles = []
        if self.changes:  # otherwise at the first change: an unsteered run's steps pay nothing
            self._hook(trainer)

    def _hook(self, trainer) -> None:
        if self._handles:
            return
        for opt in trainer.optimizers:
            self._handles.append(opt.register_step_pre_hook(self._before_step))
            self._handles.append(opt.register_step_post_hook(self._after_step))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._requested:
            return
        with self._lock:
            asked, self._requested = self._requested, []
        step = trainer.global_step
        pinned = {"step": step}
        for change in asked:
            pinned.update(change)
        self.changes = merge(self.changes, [pinned])
        self._hook(trainer)
        if trainer.is_global_zero:
            for listener in self.listeners:
                listener.on_steer(list(self.changes))

    def _before_step(self, optimizer, args, kwargs) -> None:
        values = self.values_at(self._trainer.global_step) if self.changes else {}
        if not values:
            return
        self._saved = []
        groups = optimizer.param_groups
        decayed = [g for g in groups if g.get("weight_decay", 0) > 0] or groups[:1]
        for g in groups:
            self._set(g, "lr", g["lr"] * values.get("lr_factor", 1.0))
            if "momentum" in values:
                if "momentum" in g:
                    self._set(g, "momentum", values["momentum"])
                elif "betas" in g:
                    self._set(g, "betas", (values["momentum"], *tuple(g["betas"])[1:]))
            if "weight_decay" in values and "weight_decay" in g and any(g is d for d in decayed):
                self._set(g, "weight_decay", values["weight_decay"])

    def _set(self, group: dict, key: str, value) -> None:
        self._saved.append((group, key, group[key]))
        group[key] = value

    def _after_step(self, optimizer, args, kwargs) -> None:
        for group, key, value in reversed(self._saved):
            group[key] = value
        self._saved = []

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._trainer = None


def steering_callback(trainer) -> Optional[Steering]:
    return next((cb for cb in trainer.callbacks if isinstance(cb, Steering)), None)
