"""Learning-rate schedules by name: constant, step, cosine, onecycle (all torch.optim.lr_scheduler).

`validate_scheduler(name, args)` checks names and options before training starts;
`build_scheduler(...)` makes the scheduler once the optimizer and Trainer exist, and says
whether it steps every epoch or every optimizer step.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from lit_opt.errors import ConfigError

# name -> {option: (default, check, meaning of a valid value)}
SCHEDULERS: dict[str, dict[str, tuple[Any, Any, str]]] = {
    "constant": {},
    "step": {"step_size": (10, lambda v: int(v) == v and v >= 1, "an integer >= 1 (epochs)"),
             "gamma": (0.1, lambda v: 0 < v <= 1, "in (0, 1]")},
    "cosine": {"eta_min": (0.0, lambda v: v >= 0, ">= 0")},
    "onecycle": {"pct_start": (0.3, lambda v: 0 < v < 1, "in (0, 1)")},
}


def validate_scheduler(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and check values; returns the complete options."""
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    options = SCHEDULERS[name]
    unknown = sorted(set(args) - set(options))
    if unknown:
        raise ConfigError(f"scheduler {name!r} has no option {', '.join(map(repr, unknown))}; "
                          f"its options are: {', '.join(options) or 'none'}")
    out = {}
    for key, (default, check, meaning) in options.items():
        value = args.get(key, default)
        if not isinstance(value, (int, float)) or not check(value):
            raise ConfigError(f"model.scheduler_args.{key} must be {meaning}, got {value!r}")
        out[key] = value
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
    # onecycle: steps every optimizer step, so it must know how many there will be.
    if steps_per_epoch is not None and epochs is not None:
        total = steps_per_epoch * epochs
    elif trainer is not None:
        total = int(trainer.estimated_stepping_batches)
    else:
        raise ConfigError("the onecycle schedule needs a Trainer with max_epochs")
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return sched.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total, 1),
                            pct_start=args["pct_start"]), "step"
