"""The step loss, the learning rate, and the step size an optimizer estimated for itself."""

from __future__ import annotations

from lit_opt.stream import Series, Source


class StepLoss(Source):
    """The batch's training loss (with the L2 penalty when set), from the one place every
    training-step strategy records it (`module.last_train_loss`); None for a DDP process's
    empty batch."""

    series = (Series("train/loss", label="training loss per batch", logged_as="train/loss_step"),)

    def step(self, trainer, pl_module) -> dict:
        loss = pl_module.last_train_loss
        return {} if loss is None else {"train/loss": loss}


class LearningRate(Source):
    """The learning rate of the first parameter group that this batch's step used (read as
    the batch starts: schedulers have already moved it on by the batch's end), steering's
    factor included (lit_opt/steering.py applies it only around the step itself)."""

    series = (Series("train/lr", label="learning rate"),)

    def __init__(self) -> None:
        self._steering = None

    def start(self, trainer, pl_module) -> dict:
        from lit_opt.steering import steering_callback

        self._steering = steering_callback(trainer)
        return {}

    def batch_start(self, trainer, pl_module) -> dict:
        if not trainer.optimizers:
            return {}
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        lr = lr if not hasattr(lr, "item") else lr.detach()
        if self._steering is not None and self._steering.changes:
            lr = lr * self._steering.lr_factor_at(trainer.global_step)
        return {"train/lr": lr}


class Momentum(Source):
    """SGD's momentum, or the first and second betas of Adam-like optimizers, of the first
    parameter group, as the step uses them (steering's value included); left out for an
    optimizer with neither. OneCycle cycles the momentum against the rate: this shows it."""

    series = (Series("train/momentum", label="momentum (SGD) or beta1 (Adam-like)"),
              Series("train/beta2", label="beta2 (Adam-like)"))

    def __init__(self) -> None:
        self._steering = None
        self._key = None

    def start(self, trainer, pl_module):
        from lit_opt.steering import steering_callback

        group = trainer.optimizers[0].param_groups[0] if trainer.optimizers else {}
        self._key = "momentum" if "momentum" in group else "betas" if "betas" in group else None
        self._steering = steering_callback(trainer)
        return {} if self._key else None

    def batch_start(self, trainer, pl_module) -> dict:
        value = trainer.optimizers[0].param_groups[0][self._key]
        steered = self._steering.values_at(trainer.global_step).get("momentum") if self._steering is not None \
            and self._steering.changes else None
        if self._key == "momentum":
            return {"train/momentum": float(steered if steered is not None else value)}
        betas = tuple(value)
        return {"train/momentum": float(steered if steered is not None else betas[0]),
                **({"train/beta2": float(betas[1])} if len(betas) > 1 else {})}


class EstimatedStepSize(Source):
    """Prodigy's d (and D-Adaptation's): the step size the optimizer chose for itself."""

    series = (Series("train/d", label="estimated step size d", logged_as="train/d"),)

    def start(self, trainer, pl_module):
        from lit_opt.optim import estimated_step_size

        has_d = bool(trainer.optimizers) and estimated_step_size(trainer.optimizers[0]) is not None
        return {} if has_d else None

    def step(self, trainer, pl_module) -> dict:
        from lit_opt.optim import estimated_step_size

        d = estimated_step_size(trainer.optimizers[0]) if trainer.optimizers else None
        return {} if d is None else {"train/d": d}
