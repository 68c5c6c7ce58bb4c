"""`gd`: one step per epoch with the mean gradient over the whole training set, accumulated
batch by batch (memory stays at one batch)."""

from __future__ import annotations

from typing import Optional

import torch

from lit_opt.training_steps.base import TrainingStep


class FullBatch(TrainingStep):
    automatic = False
    checkpoint_key = "lit_opt_gd"  # mid-epoch, the gradient summed so far is state too

    def __init__(self) -> None:
        self.samples = 0
        self._restore: Optional[list] = None  # the summed gradient read from a checkpoint

    def training_step(self, module, x, y, batch_idx: int):
        """Sum per-sample gradients over the epoch, step once with their mean.

        Under DDP each backward all-reduces (averages) the gradient across the W processes,
        so the accumulated gradient is (sum over all samples) / W: it is scaled by W / N,
        N counted over all processes, which gives the whole set's mean gradient exactly.
        """
        opt = module.optimizers()
        trainer = module.trainer
        if batch_idx == 0:
            opt.zero_grad()
            self.samples = 0
        logits = module(x)
        ce_sum = module.data_loss(logits, y, reduction="sum")
        module.manual_backward(ce_sum)
        self.samples += len(y)
        penalty = module.l2_penalty()  # weights are fixed within the epoch: same value every batch
        if batch_idx == trainer.num_training_batches - 1:
            count = torch.tensor(float(self.samples), device=module.device)
            total = float(trainer.strategy.reduce(count, reduce_op="sum"))
            scale = trainer.world_size / total
            for p in module.net.parameters():
                if p.grad is not None:
                    p.grad.mul_(scale)
            l2 = module.hparams.l2
            if l2:  # d/dw lambda*sum(w^2) = 2*lambda*w, added directly: no extra all-reduce
                for p in module.decay_params:
                    p.grad.add_(p.detach(), alpha=2 * l2)
            opt.step()
            self.step_schedulers(module, "step")
        n = max(len(y), 1)  # an empty DDP batch still takes part in the epoch's logging
        module.record_train_batch(ce_sum / n + penalty, ce_sum / n, logits, y)
        return None

    def state(self, module) -> dict:
        return {"samples": self.samples,
                "grads": [None if p.grad is None else p.grad.detach().cpu().clone() for p in module.net.parameters()]}

    def load_state(self, module, state: dict) -> None:
        # Put back in on_train_start: the Trainer zeroes the gradients after restoring.
        self.samples, self._restore = state["samples"], state["grads"]

    def on_train_start(self, module) -> None:
        grads, self._restore = self._restore, None
        if grads is not None:
            for p, g in zip(module.net.parameters(), grads):
                p.grad = None if g is None else g.to(p.device)
