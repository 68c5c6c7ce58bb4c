"""Learning-rate schedules by name: constant, step, cosine, onecycle, warmup_linear (all torch.optim.lr_scheduler).

`validate_scheduler(name, args)` checks names and options before training starts;
`build_scheduler(...)` makes the scheduler once the optimizer and Trainer exist, and says
whether it steps every epoch or every optimizer step.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from lit_opt.declarations.schedulers import SCHEDULER_OPTIONS
from lit_opt.errors import ConfigError

def validate_scheduler(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and check values against lit_opt/declarations/schedulers.py; returns the
    complete options."""
    if name not in SCHEDULER_OPTIONS:
        raise ConfigError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULER_OPTIONS)}")
    options = {h.name: h for h in SCHEDULER_OPTIONS[name]}
    unknown = sorted(set(args) - set(options))
    if unknown:
        raise ConfigError(f"scheduler {name!r} has no option {', '.join(map(repr, unknown))}; "
                          f"its options are: {', '.join(options) or 'none'}")
    out = {}
    for key, field in options.items():
        try:
            out[key] = field.check(args.get(key, field.default))
        except ValueError as exc:
            raise ConfigError(f"model.scheduler_args.{exc}") from None
    return out


def build_scheduler(name: str, args: dict[str, Any], optimizer: torch.optim.Optimizer, trainer,
                    steps_per_epoch: Optional[int] = None):
    """(scheduler or None, interval 'epoch' | 'step')."""
    sched = torch.optim.lr_scheduler
    if name == "constant":
        return None, "epoch"
    epochs = trainer.max_epochs if trainer is not None and trainer.max_epochs and trainer.max_epochs > 0 else None
    if name == "step":
        return sched.StepLR(optimizer, step_size=int(args["step_size"]), gamma=args["gamma"]), "epoch"
    if name == "cosine":
        if epochs is None:
            raise ConfigError("the cosine schedule needs --trainer.max_epochs")
        return sched.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=args["eta_min"]), "epoch"
    # onecycle and warmup_linear step every optimizer step, so they must know how many there will be.
    if steps_per_epoch is not None and epochs is not None:
        total = steps_per_epoch * epochs
    elif trainer is not None:
        total = int(trainer.estimated_stepping_batches)
    else:
        raise ConfigError("the onecycle schedule needs a Trainer with max_epochs")
    if name == "warmup_linear":
        return sched.LambdaLR(optimizer, WarmupLinear(max(total, 1), args["warmup"], args["start_factor"],
                                                      args["end_factor"])), "step"
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return sched.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total, 1), pct_start=args["pct_start"],
                            cycle_momentum=args["cycle_momentum"], div_factor=args["div_factor"],
                            final_div_factor=args["final_div_factor"]), "step"


class WarmupLinear:
    """The factor on the rate at step s of `total`: from `start` up to 1 linearly over the first
    int(total x warmup) steps, then linearly down to `end` at step `total` (airbench94's
    schedule). A plain object, not a lambda, so that LambdaLR's state_dict keeps it in
    checkpoints; torch has no such schedule as one class (SequentialLR of two LinearLRs
    restarts the second at the milestone with a deprecated call)."""

    def __init__(self, total: int, warmup: float, start: float, end: float):
        self.total, self.start, self.end = int(total), float(start), float(end)
        self.warmup = int(total * warmup)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start + (1.0 - self.start) * step / self.warmup
        return 1.0 + (self.end - 1.0) * min(step - self.warmup, self.total - self.warmup) / max(self.total - self.warmup, 1)


def schedule_ended(scheduler) -> bool:
    """A schedule with an end (one-cycle's total steps, cosine's T_max) that has reached it.
    A run trained for more epochs than planned continues at the rate the schedule ended at:
    one-cycle would raise past its total, and cosine would climb back up."""
    sched = torch.optim.lr_scheduler
    if isinstance(scheduler, sched.OneCycleLR):  # its last step is total_steps - 1 (past it: back up, then an error)
        return scheduler.last_epoch >= scheduler.total_steps - 1
    if isinstance(scheduler, sched.CosineAnnealingLR):  # eta_min at T_max (past it: back up)
        return scheduler.last_epoch >= scheduler.T_max
    return False
