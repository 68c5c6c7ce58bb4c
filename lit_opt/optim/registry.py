"""The optimizer registry: one entry per name, read by the CLI, configs, GUI and docs.

    >>> from lit_opt import optim
    >>> optim.names()[:3]
    ['gd', 'sgd', 'momentum']
    >>> optim.validate("adam", lr="3e-4")["lr"]
    0.0003
    >>> opt = optim.build("adam", model.parameters(), lr=3e-4)   # doctest: +SKIP

Modelled on timm's optimizer factory: growth as data, not if/elif. A new
optimizer appears everywhere by adding one `OptimizerInfo` to lit_opt/optim/entries.py.
torch and pytorch_optimizer are imported inside the factories, so importing
this module and validating settings stay fast (the CLI validates before any
data loads). Each entry's comment names its paper and the authors' code it was checked
against; docs/optimizers.md has the table, with what each library gets right or wrong.
"""

from __future__ import annotations

import math
from typing import Any

from lit_opt.optim.decay import decay_parameters, scale_norm_groups, split_decay
from lit_opt.optim.entries import BY_NAME, ENTRIES
from lit_opt.optim.fields import TOTAL_STEPS
from lit_opt.optim.hyperparameter import Hyperparameter, OptimizerInfo, reject_unknown

__all__ = ["Hyperparameter", "OptimizerInfo", "names", "schema", "info", "validate", "build",
           "split_decay", "scale_norm_groups", "decay_parameters", "estimated_step_size", "TOTAL_STEPS",
           "fill_total_steps"]



# ---- public API ---------------------------------------------------------------------------------


def names() -> list[str]:
    """Registered optimizer names, in teaching order."""
    return [entry.name for entry in ENTRIES]


def info(name: str) -> OptimizerInfo:
    """The registry entry for `name` (case-insensitive); ValueError listing the names if unknown."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in BY_NAME:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(names())}")
    return BY_NAME[key]


def schema(name: str) -> list[Hyperparameter]:
    """The tunable hyperparameters of `name`, with defaults, ranges and help."""
    return list(info(name).hyperparameters)


def validate(name: str, **hyperparameters: Any) -> dict:
    """Check `hyperparameters` for optimizer `name` and return them complete with defaults.

    Unknown keys and out-of-range values raise ValueError naming the field and
    what is allowed. Cheap: no torch, no parameters needed.
    """
    entry = info(name)
    if entry.resolve is not None:
        return entry.resolve(dict(hyperparameters))
    reject_unknown(entry.name, hyperparameters, entry.hyperparameters)
    return {hp.name: hp.check(hyperparameters.get(hp.name, hp.default), entry.name)
            for hp in entry.hyperparameters}


def build(name: str, params, **hyperparameters: Any):
    """Validate, then construct the optimizer over `params` (tensors or param-group dicts).

    Param-group dicts may carry their own `weight_decay` (see `split_decay`);
    they override the value given here, as torch's param groups always do.
    """
    entry = info(name)
    return entry.factory(params, **validate(entry.name, **hyperparameters))


def fill_total_steps(hyperparameters: dict, total_steps) -> dict:
    """`hyperparameters` with every TOTAL_STEPS ("auto") replaced by `total_steps` (the
    trainer's estimated_stepping_batches); ValueError if that is not a finite count."""
    auto = [key for key, value in hyperparameters.items() if value == TOTAL_STEPS]
    if not auto:
        return dict(hyperparameters)
    if not (isinstance(total_steps, (int, float)) and math.isfinite(total_steps) and total_steps >= 1):
        raise ValueError(f"{', '.join(auto)} {TOTAL_STEPS!r} is the run's total number of steps, "
                         f"and this run has none ({total_steps}): set trainer.max_epochs or "
                         f"trainer.max_steps, or give a number")
    return {key: int(total_steps) if key in auto else value for key, value in hyperparameters.items()}


def estimated_step_size(optimizer) -> float | None:
    """The step size an optimizer estimated for itself, `param_groups[0]["d"]` (Prodigy's d,
    and D-Adaptation's), or None. Such optimizers also record their initial estimate "d0";
    that tells them from torch's Adafactor, whose "d" is its update clipping threshold."""
    groups = getattr(optimizer, "param_groups", None) or [{}]
    group = groups[0]
    if "d" in group and "d0" in group:
        return float(group["d"])
    return None
