"""Hyperparameter fields many optimizers share (learning rate, weight decay, momentum, betas,
eps, flags), each with its usual range and help, for the registry's entries."""

from __future__ import annotations

from lit_opt.optim.hyperparameter import Hyperparameter

# A setting given as this word is the run's total number of optimizer steps, which only the
# trainer knows: lit_opt's module fills it in (registry.fill_total_steps) before building.
TOTAL_STEPS = "auto"



def lr_field(default: float, help: str = "learning rate (step size)") -> Hyperparameter:
    return Hyperparameter("lr", float, default, low=0.0, low_inclusive=False, help=help,
                          log_scale=True)


def wd_field(default: float = 0.0, help: str = "L2 penalty added to the gradient (coupled)") -> Hyperparameter:
    return Hyperparameter("weight_decay", float, default, low=0.0, help=help)


def momentum_field(default: float, low_inclusive: bool = True) -> Hyperparameter:
    return Hyperparameter("momentum", float, default, low=0.0, high=1.0, low_inclusive=low_inclusive,
                          help="momentum factor mu (velocity b <- mu*b + g)")


def betas_field(default: tuple[float, float] = (0.9, 0.999)) -> Hyperparameter:
    return Hyperparameter("betas", tuple, default, low=0.0, high=1.0,
                          help="decay rates of the first and second moment averages")


def eps_field(default: float, help: str = "added to the denominator for numerical stability") -> Hyperparameter:
    return Hyperparameter("eps", float, default, low=0.0, low_inclusive=False, help=help,
                          log_scale=True)


def flag_field(name: str, default: bool, help: str) -> Hyperparameter:
    return Hyperparameter(name, bool, default, help=help)
