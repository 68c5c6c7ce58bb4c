"""How one training batch becomes an optimizer step: one strategy per kind of optimizer.

    strategy = strategy_for(optim.info("sam"))   # chosen from the optimizer's registry entry
    loss = strategy.training_step(module, x, y, batch_idx)

- `Standard` (standard.py): Lightning's automatic optimization, one step per batch.
- `FullBatch` (full_batch.py): `gd`, one step per epoch from the whole set's mean gradient.
- `Closure` (lit_opt/optim/sam.py, with everything else SAM needs): gradient at w, then a
  step whose closure recomputes the loss at the perturbed weights.

The module (lit_opt/module.py) keeps the net, the loss, the penalty and the metrics; a
strategy calls `module.data_loss`, `module.with_penalty` and `module.record_train_batch`, and
keeps whatever state its kind of step needs (gd's accumulated gradient) in checkpoints.
"""

from __future__ import annotations

from lit_opt.training_steps.base import TrainingStep


def strategy_for(info) -> TrainingStep:
    """The strategy an optimizer's registry entry asks for (its `full_batch`/`needs_closure` flags)."""
    if info.full_batch:
        from lit_opt.training_steps.full_batch import FullBatch

        return FullBatch()
    if info.needs_closure:
        from lit_opt.optim.sam import Closure

        return Closure()
    from lit_opt.training_steps.standard import Standard

    return Standard()


__all__ = ["TrainingStep", "strategy_for"]
