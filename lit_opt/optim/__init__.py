"""Optimizers by name: the registry (schemas, validation, construction) and our own LAMB and Expectigrad.

    from lit_opt.optim import build, split_decay
    opt = build("adamw", split_decay(model.named_parameters(), 0.05), lr=1e-3)
"""

from lit_opt.optim.registry import (
    TOTAL_STEPS,
    Hyperparameter,
    OptimizerInfo,
    build,
    decay_parameters,
    estimated_step_size,
    fill_total_steps,
    info,
    names,
    schema,
    scale_norm_groups,
    split_decay,
    validate,
)

__all__ = ["Hyperparameter", "OptimizerInfo", "names", "schema", "info", "build", "validate",
           "split_decay", "scale_norm_groups", "decay_parameters", "estimated_step_size", "TOTAL_STEPS",
           "fill_total_steps"]
