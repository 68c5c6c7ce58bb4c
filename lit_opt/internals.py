"""Every private Lightning and torch attribute lit_opt reads, one small shim each.

No public API gives these values. Each shim names the version it was written against, and
tests/test_internals.py checks each one's behaviour against what it must return, so a release
that moves or changes one fails that test loudly instead of silently logging less or running
slower. Nothing else in lit_opt reads a private attribute of Lightning or torch.
"""

from __future__ import annotations

import torch

WRITTEN_AGAINST = {"lightning": "2.6", "torch": "2.14"}


def batches_that_stepped(trainer) -> int:
    """Training batches that ended with an optimizer step (or with gd's accumulation) so far;
    in a batch's own hooks, those before it: the step number Lightning logs that batch at. Not `global_step`, which counts optimizer
    steps (one per epoch for gd). Lightning 2.6: `fit_loop.epoch_loop._batches_that_stepped`,
    restored from checkpoints."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def batches_done_this_epoch(trainer) -> int:
    """Training batches of the current epoch started so far, counting the one now running and
    those before a mid-epoch resume. Lightning 2.6: `fit_loop.epoch_loop.batch_progress.current.ready`."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)


def per_tensor_norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The 2-norm of each tensor, in one fused call: what torch's own clip_grad_norm_ uses
    (torch 2.14: `torch._foreach_norm`). The public per-tensor alternative (a vector_norm per
    tensor, or get_total_norm) adds a kernel per tensor and a second reduction."""
    return torch._foreach_norm(tensors)


# The callback hooks Lightning calls once per batch (lightning 2.6).
PER_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
                   "on_before_optimizer_step", "on_before_zero_grad", "on_validation_batch_start",
                   "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end",
                   "on_predict_batch_start", "on_predict_batch_end")


def skip_unused_hooks(callbacks) -> None:
    """Lightning calls every per-batch hook of every callback inside a profiler context, the
    base class's empty ones too: with a run's dozen callbacks, about 70 calls of a few
    microseconds each per training step (lightning 2.6, `trainer/call.py`,
    `_call_callback_hooks`). It skips a hook attribute that is not callable, so each hook a
    callback does not override is set to None on that instance (its class is unchanged)."""
    from lightning.pytorch.callbacks import Callback

    for callback in callbacks:
        for name in PER_BATCH_HOOKS:
            if getattr(type(callback), name, None) is getattr(Callback, name):
                setattr(callback, name, None)


def skip_module_setattr(cls) -> None:
    """Lightning sets `_current_fx_name` on the module around every hook, about 40 times a
    step (lightning 2.6, `trainer/call.py`); nn.Module.__setattr__ spends its time checking
    whether a string is a Parameter or a Module. Store it as a plain attribute instead."""
    base = cls.__setattr__

    def __setattr__(self, name, value):
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            base(self, name, value)

    cls.__setattr__ = __setattr__
    return cls
