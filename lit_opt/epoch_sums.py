"""The training sums of one epoch: loss x n, cross-entropy x n and correct predictions,
kept on the batch's device so that adding a step never waits for it. The module hands them
to torchmetrics once per epoch (a metric update every step was a large share of a small
MLP's step: docs/performance.md), and a checkpoint taken mid-epoch carries them, so a resumed epoch's
train/loss and train/acc cover the whole epoch."""

from __future__ import annotations

from typing import Optional

import torch


class TrainSums:
    """Sums over an epoch's training batches of loss x n, ce x n and correct predictions,
    kept as tensors on the batch's device so adding a step never waits for the device."""

    def __init__(self) -> None:
        self._sums: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, loss: torch.Tensor, ce: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        n = len(y)
        correct = (logits.detach().argmax(dim=1) == y).sum()
        step = torch.stack([loss.detach().float() * n, ce.detach().float() * n, correct.float()])
        if self._sums is None:
            self._sums = step
        else:
            if self._sums.device != step.device:  # restored from a checkpoint, on the CPU
                self._sums = self._sums.to(step.device)
            self._sums.add_(step)
        self.count += n

    def state(self, trainer) -> dict:
        """The sums so far as plain CPU data, summed over DDP processes (a collective call)."""
        sums = self._sums if self._sums is not None else torch.zeros(3)
        both = torch.cat([sums.detach().float().cpu(), torch.tensor([float(self.count)])])
        if trainer is not None and trainer.world_size > 1:
            both = trainer.strategy.reduce(both.to(trainer.strategy.root_device), reduce_op="sum").cpu()
        return {"sums": both[:3].clone(), "count": int(both[3])}

    def load(self, state: dict, first_process: bool = True) -> None:
        """Continue from `state()`; other DDP processes start from zero (process 0 holds the total)."""
        if first_process and state["count"]:
            self._sums, self.count = state["sums"].clone(), int(state["count"])
        else:
            self._sums, self.count = None, 0

    def take(self) -> dict:
        """The sums so far (as 0-d tensors) and the sample count; starts a new epoch."""
        sums = self._sums if self._sums is not None else torch.zeros(3)  # no sample here: weight 0
        result = {"loss": sums[0], "ce": sums[1], "correct": sums[2], "count": self.count}
        self._sums, self.count = None, 0
        return result
