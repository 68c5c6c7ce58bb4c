"""Lightning's automatic optimization: forward, loss, and Lightning does backward and step."""

from __future__ import annotations

from lit_opt.training_steps.base import TrainingStep


class Standard(TrainingStep):
    def training_step(self, module, x, y, batch_idx: int):
        logits = module(x)
        ce = module.data_loss(logits, y)
        loss = module.with_penalty(ce)
        module.record_train_batch(loss, ce, logits, y)
        return loss
