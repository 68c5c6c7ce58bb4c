"""Lookahead with a scheduled step (Zhang et al. 2019, "Lookahead Optimizer: k steps forward,
1 step back"), as airbench94 uses it (KellerJordan/cifar10-airbench): every `every` optimizer
steps the slow copy moves toward the weights, slow += alpha (fast - slow), and the weights are
set back to it; alpha = 1 - decay (s / total)^power at step s, so it starts as plain training
(alpha 1) and averages more and more; after the last step the weights become the slow copy.
BatchNorm's running statistics are averaged with the weights (every float tensor of the
state). torch has no Lookahead; pytorch_optimizer's wraps an optimizer with a fixed alpha and
no BatchNorm statistics, which is not this recipe.

    trainer:
      callbacks:
        - class_path: lit_opt.lookahead.Lookahead
          init_args: {every: 5, decay: 0.7737809375, power: 3}

The slow copy is saved in checkpoints (this callback's state), so a resumed run continues it.
"""

from __future__ import annotations

from typing import Optional

import torch
from lightning.pytorch.callbacks import Callback

from lit_opt.errors import ConfigError


class Lookahead(Callback):
    def __init__(self, every: int = 5, decay: float = 0.95 ** 5, power: float = 3.0):
        if every < 1:
            raise ConfigError(f"Lookahead every must be >= 1 step, got {every}")
        if not 0.0 <= decay <= 1.0:
            raise ConfigError(f"Lookahead decay must be in [0, 1], got {decay}")
        self.every, self.decay, self.power = int(every), float(decay), float(power)
        self.slow: Optional[dict[str, torch.Tensor]] = None
        self._last_step = -1  # the optimizer step last seen (batches that accumulate do not step)
        self._total = 0  # the run's optimizer steps

    def alpha(self, step: int, total: int) -> float:
        """The share of the way the slow copy moves at optimizer step `step` of `total`."""
        return 1.0 - self.decay * (step / total) ** self.power

    def _tensors(self, pl_module) -> dict[str, torch.Tensor]:
        return {k: v for k, v in pl_module.net.state_dict().items() if v.dtype in (torch.half, torch.bfloat16, torch.float)}

    def on_train_start(self, trainer, pl_module) -> None:
        self._total = int(trainer.estimated_stepping_batches)  # read once: Lightning recomputes it per call
        if self.slow is None:  # a fresh run (a resumed one has its slow copy from the checkpoint)
            self.slow = {k: v.detach().clone() for k, v in self._tensors(pl_module).items()}
        else:
            self.slow = {k: v.to(pl_module.device) for k, v in self.slow.items()}

    @torch.no_grad()
    def _move(self, pl_module, alpha: float) -> None:
        for key, fast in self._tensors(pl_module).items():
            slow = self.slow[key]
            slow.lerp_(fast, alpha)
            fast.copy_(slow)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step, total = trainer.global_step, self._total
        if step == 0 or step == self._last_step:  # no optimizer step this batch (accumulating)
            return
        self._last_step = step
        if step % self.every == 0:
            self._move(pl_module, self.alpha(min(step, total), total))
        if step == total:  # the end: the weights become the slow copy
            self._move(pl_module, 0.0)

    def state_dict(self) -> dict:
        return {"slow": {k: v.detach().cpu() for k, v in (self.slow or {}).items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.slow = dict(state_dict.get("slow") or {}) or None
