"""Everything SAM (Foret et al. 2021; its adaptive form ASAM, Kwon et al. 2021) needs beyond
its registry entry: its training step, the BatchNorm handling of its second pass, undoing its
perturbation before an emergency save, and naming rho when a run diverges.

The step: backward at w, then `opt.step(closure)` with a closure that recomputes the loss at
the perturbed weights w + e (BatchNorm running statistics frozen for that second pass). Of
the ways to run SAM (davda54/sam, pytorch_optimizer.SAM) inside Lightning 2.6, this is the
one measured right on all counts (global_step, logs and metrics count each batch once, the
perturbation uses this batch's gradient); docs/optimizers.md says what the others get wrong.
"""

from __future__ import annotations

from torch import nn

from lit_opt.training_steps.base import TrainingStep


class Closure(TrainingStep):
    automatic = False

    def training_step(self, module, x, y, batch_idx: int):
        logits = module(x)
        ce = module.data_loss(logits, y)
        loss = module.with_penalty(ce)
        opt = module.optimizers()
        opt.zero_grad()
        module.manual_backward(loss)

        def closure():
            with frozen_batchnorm_stats(module.net):
                second = module.with_penalty(module.data_loss(module(x), y))
            module.manual_backward(second)
            return second

        opt.step(closure=closure)
        self.step_schedulers(module, "step")
        module.record_train_batch(loss, ce, logits, y)
        return loss

    def restore_weights(self, optimizers) -> None:
        """A run that stops inside SAM's closure holds the perturbed weights w + e;
        pytorch_optimizer's SAM keeps w as `old_p` in its state until its second step."""
        for opt in optimizers:
            for group in opt.param_groups:
                for p in group["params"]:
                    old = opt.state.get(p, {}).get("old_p")
                    if old is not None:
                        p.data.copy_(old)
                        del opt.state[p]["old_p"]

    def divergence_suspects(self, optimizer) -> str:
        rho = optimizer.param_groups[0].get("rho")
        return f"SAM's rho ({rho:g})" if rho is not None else ""


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class frozen_batchnorm_stats:
    """Context manager: BatchNorm layers normalize with batch statistics but leave their
    running statistics alone (SAM's second pass must not count the batch twice)."""

    def __init__(self, net: nn.Module):
        self.layers = [m for m in net.modules() if isinstance(m, BATCH_NORMS)]

    def __enter__(self):
        self.saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
                      for m in self.layers]
        for m in self.layers:
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged

    def __exit__(self, *exc):
        for m, (momentum, tracked) in zip(self.layers, self.saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
