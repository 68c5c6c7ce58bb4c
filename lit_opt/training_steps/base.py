"""What every training-step strategy provides (lit_opt/training_steps/__init__.py says which exist)."""

from __future__ import annotations

from typing import Optional


class TrainingStep:
    """Defaults: automatic optimization, no state of its own, nothing to undo."""

    automatic = True  # Lightning's automatic optimization; False: the strategy steps itself
    checkpoint_key: Optional[str] = None  # where `state` goes in a checkpoint

    def training_step(self, module, x, y, batch_idx: int):
        raise NotImplementedError

    def state(self, module) -> Optional[dict]:
        """Extra state a checkpoint must hold to resume mid-epoch exactly, or None."""
        return None

    def load_state(self, module, state: dict) -> None:
        pass

    def on_train_start(self, module) -> None:
        pass

    def restore_weights(self, optimizers) -> None:
        """Before an emergency save (stop, divergence): put back weights a step has moved
        temporarily (SAM's perturbation)."""

    def divergence_suspects(self, optimizer) -> str:
        """What besides the learning rate may have made the run diverge ("" if nothing)."""
        return ""

    @staticmethod
    def step_schedulers(module, interval: str) -> None:
        """Manual optimization steps its own schedulers (Lightning only does so automatically)."""
        sch = module.lr_schedulers()
        if sch is not None and module.scheduler_interval == interval:
            module.lr_scheduler_step(sch, None)  # as Lightning does: an ended schedule holds
