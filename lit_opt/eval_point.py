"""Switching an optimizer between the point it trains at and the point it is evaluated at.

Schedule-Free (Defazio et al. 2024; facebookresearch/schedule_free) keeps two sequences, z
(the base optimizer's steps) and the gradient point y; its evaluation point is their running
average x. While training the weights hold y; the authors' `optimizer.eval()` moves them to x
and `optimizer.train()` back. Their README asks for eval() before every evaluation and every
checkpoint, and for BatchNorm's running statistics to be recomputed at x, since the ones
gathered while training belong to y. `EvalPoint` does all of that inside Lightning:

- validation and test run at x, with BatchNorm statistics recomputed at x on a fixed, seeded
  subset of the training set (never the training batches: the batcher is not touched, and the
  global random state is saved and restored around the recomputation);
- every checkpoint holds x as its weights (best.ckpt, last.ckpt, what `classify` loads) with
  BatchNorm statistics at x, its optimizer state in eval mode as the authors ask, and under
  the key "lit_opt_eval_point" the training point y with its BatchNorm statistics, so that a
  resumed run continues exactly where it stopped;
- after an evaluation training continues at exactly the y it left: a copy taken before
  eval() is put back after train() (train()'s interpolation back gives y only up to float
  rounding), so evaluating, however often, never changes the training;
- when fit ends the model stays at x, with BatchNorm statistics at x.

The registry marks the optimizers that need this (`OptimizerInfo.eval_point`);
`needs_eval_point` also sees one that is SAM's base. `check_schedule` says when a learning-rate
schedule is set with one (Schedule-Free is meant to run without one).
"""

from __future__ import annotations

import warnings
from typing import Iterator, Optional

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from lit_opt import optim

CHECKPOINT_KEY = "lit_opt_eval_point"
CHECKPOINT_FORMAT = 1


class ScheduleWarning(UserWarning):
    """A learning-rate schedule set with an optimizer meant to run without one."""


def needs_eval_point(optimizer: str, optimizer_args: Optional[dict] = None) -> bool:
    """Whether optimizer `optimizer` (a registry name; with SAM, its base in `optimizer_args`)
    evaluates at another point than it trains at, so that EvalPoint must switch it."""
    entry = optim.info(optimizer)
    if entry.eval_point:
        return True
    base = (optimizer_args or {}).get("base")
    return bool(entry.needs_closure and base and optim.info(base).eval_point)


def check_schedule(optimizer: str, scheduler: Optional[str], optimizer_args: Optional[dict] = None) -> Optional[str]:
    """Warn (ScheduleWarning) and return the message when a learning-rate schedule other than
    constant is set with a Schedule-Free optimizer; None when there is nothing to say.

    The authors: "As the name suggests, no scheduler is needed with this optimizer. To add
    warmup, rather than using a learning rate schedule you can just set the warmup_steps
    parameter." Their code still works under a schedule (it multiplies the lr a schedule
    sets), so this is a warning, not an error.
    """
    name = (scheduler or "constant").strip().lower()
    if name == "constant" or not needs_eval_point(optimizer, optimizer_args):
        return None
    which = optimizer if optim.info(optimizer).eval_point else f"{optimizer} over {optimizer_args['base']}"
    message = (f"{which} is Schedule-Free: it is meant to be used without a learning-rate schedule "
               f"(its average x does what a decaying schedule would), but scheduler {name!r} is set "
               f"and will scale its learning rate. Use scheduler constant, and the optimizer's "
               f"warmup_steps for a warm-up.")
    warnings.warn(message, ScheduleWarning, stacklevel=2)
    return message


def switchable(optimizer) -> Optional[torch.optim.Optimizer]:
    """The optimizer with the authors' eval()/train() switch: `optimizer` itself, or the base
    optimizer of a SAM wrapping one; None for any other optimizer."""
    for opt in (optimizer, getattr(optimizer, "base_optimizer", None)):
        if (opt is not None and callable(getattr(opt, "eval", None)) and callable(getattr(opt, "train", None))
                and opt.param_groups and all("train_mode" in g for g in opt.param_groups)):
            return opt
    return None


def _batchnorms(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in module.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


class EvalPoint(Callback):
    """Validation, test and checkpoints at the optimizer's evaluation point; training at its
    training point. A no-op for optimizers without the eval()/train() switch.

    Args:
        bn_batches: batches of the training set over which BatchNorm statistics are recomputed
            at the evaluation point (the authors' README: 50). Only nets with BatchNorm pay for it.
        bn_batch_size: their size; None: the data module's training batch size.
        seed: seed of the fixed subset those batches are drawn from (its own torch.Generator).

    BatchNorm statistics are recomputed as an equal-weight average over the subset's batches
    (running statistics reset, momentum None: what torch.optim.swa_utils.update_bn and PreciseBN
    do), not the README's exponential average started from y's statistics, so they are those
    of x alone. The batches are not augmented: they only estimate statistics, for evaluation
    on un-augmented images. They need a data module with `train_set` (images, labels) and
    `on_after_batch_transfer` (lit_opt's ClassificationDataModule); with another, BatchNorm
    statistics stay those of the training point, and a warning says so.
    """

    def __init__(self, bn_batches: int = 50, bn_batch_size: Optional[int] = None, seed: int = 0):
        if bn_batches < 1:
            raise ValueError(f"bn_batches must be >= 1, got {bn_batches}")
        self.bn_batches, self.bn_batch_size, self.seed = bn_batches, bn_batch_size, seed
        self._reset()
        self._pending: Optional[dict] = None  # the training point from a checkpoint being resumed

    def _reset(self) -> None:
        self._train_point: Optional[dict[str, torch.Tensor]] = None  # y's copy while at x
        self._bn_cache: Optional[tuple[int, dict[str, torch.Tensor]]] = None  # (step, BN state at x)
        self._subset: Optional[torch.Tensor] = None
        self._detached = False  # weights loaded from a checkpoint for a test: not the optimizer's
        self._warned = False

    # ---- what is switched ---------------------------------------------------------------------

    @staticmethod
    def _optimizers(trainer) -> list:
        found = [switchable(opt) for opt in (trainer.optimizers or [])]
        return [opt for opt in found if opt is not None]

    @staticmethod
    def _tensors(pl_module, optimizers) -> dict[str, torch.Tensor]:
        """The module's parameters these optimizers move, and its BatchNorm statistics, by name."""
        held = {id(p) for opt in optimizers for g in opt.param_groups for p in g["params"]}
        tensors = {name: p for name, p in pl_module.named_parameters() if id(p) in held}
        for prefix, m in _batchnorms(pl_module):
            for name, buffer in m.named_buffers(recurse=False):
                if buffer is not None:
                    tensors[f"{prefix}.{name}" if prefix else name] = buffer
        return tensors

    @property
    def at_eval_point(self) -> bool:
        """True while the weights are the evaluation point x of a training run."""
        return self._train_point is not None

    # ---- switching ----------------------------------------------------------------------------

    def to_eval_point(self, trainer, pl_module) -> None:
        """Weights to x (the authors' optimizer.eval()), BatchNorm statistics recomputed at x."""
        if self.at_eval_point or self._detached:
            return
        optimizers = self._optimizers(trainer)
        # Only from the training point: an optimizer already in eval mode holds x (or nothing of ours).
        if not optimizers or not all(g["train_mode"] for opt in optimizers for g in opt.param_groups):
            return
        with torch.inference_mode(False), torch.no_grad():
            self._train_point = {name: t.detach().clone() for name, t in self._tensors(pl_module, optimizers).items()}
            for opt in optimizers:
                opt.eval()
            self._batchnorm_at_x(trainer, pl_module)

    def to_train_point(self, trainer, pl_module) -> None:
        """Weights back to exactly the y they left (the authors' optimizer.train(), then y's copy)."""
        if not self.at_eval_point:
            return
        optimizers = self._optimizers(trainer)
        with torch.inference_mode(False), torch.no_grad():
            for opt in optimizers:
                opt.train()
            tensors = self._tensors(pl_module, optimizers)
            for name, value in self._train_point.items():
                tensors[name].copy_(value)
        self._train_point = None

    def _apply_pending(self, trainer, pl_module) -> None:
        """A resumed run: put back the training point its checkpoint saved (the weights Lightning
        loaded are x), and the optimizer in train mode. Runs once the optimizer state is loaded."""
        pending, self._pending = self._pending, None
        optimizers = self._optimizers(trainer)
        if pending is None or not optimizers:
            return
        tensors = self._tensors(pl_module, optimizers)
        saved = pending["train_point"]
        missing = sorted(set(tensors) - set(saved))
        if missing:
            raise RuntimeError(f"the checkpoint's training point has no {', '.join(missing)}: it was "
                               f"saved from another net or optimizer and cannot be resumed exactly")
        with torch.inference_mode(False), torch.no_grad():
            for name, t in tensors.items():
                t.copy_(saved[name])
        for opt in optimizers:
            for g in opt.param_groups:
                g["train_mode"] = True
        self._train_point, self._bn_cache = None, None

    # ---- BatchNorm statistics at x ------------------------------------------------------------

    def _batchnorm_at_x(self, trainer, pl_module) -> None:
        layers = [m for _, m in _batchnorms(pl_module)]
        if not layers:
            return
        tensors = {f"{p}.{n}" if p else n: b for p, m in _batchnorms(pl_module)
                   for n, b in m.named_buffers(recurse=False) if b is not None}
        step = trainer.global_step
        if self._bn_cache is not None and self._bn_cache[0] == step:  # same weights: same statistics
            for name, value in self._bn_cache[1].items():
                tensors[name].copy_(value)
            return
        batches = self._bn_inputs(trainer, pl_module)
        if batches is None:
            if not self._warned:
                self._warned = True
                warnings.warn("EvalPoint: the data module has no train_set to recompute BatchNorm "
                              "statistics at the evaluation point from; evaluation uses those of the "
                              "training point", stacklevel=2)
            return
        modes = [(m, m.training) for m in pl_module.modules()]
        momenta = [m.momentum for m in layers]
        device = pl_module.device
        plugin = trainer.precision_plugin
        try:
            # Only BatchNorm in training mode: dropout stays off, so nothing draws random numbers;
            # the global generators are restored all the same (what a net does is not ours to know).
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                pl_module.eval()
                for m in layers:
                    m.reset_running_stats()
                    m.momentum = None  # cumulative: an equal-weight average over the batches
                    m.train()
                with plugin.forward_context():
                    for x in batches:
                        pl_module(plugin.convert_input(x))
        finally:
            for m, training in modes:
                m.training = training
            for m, momentum in zip(layers, momenta):
                m.momentum = momentum
        self._bn_cache = (step, {name: t.clone() for name, t in tensors.items()})

    def _bn_inputs(self, trainer, pl_module) -> Optional[Iterator[torch.Tensor]]:
        dm = getattr(trainer, "datamodule", None)
        train_set = getattr(dm, "train_set", None)
        if train_set is None or not hasattr(dm, "on_after_batch_transfer"):
            return None
        images, labels = train_set
        n = len(labels)
        size = self.bn_batch_size or getattr(dm, "batch_size", None) or 100
        count = min(n, self.bn_batches * size)
        if self._subset is None or len(self._subset) != count:
            generator = torch.Generator().manual_seed(self.seed)  # its own: the global one is not touched
            self._subset = torch.randperm(n, generator=generator)[:count]
        subset, device = self._subset, pl_module.device

        def batches():
            for start in range(0, count, size):
                idx = subset[start:start + size].to(images.device)
                batch = (images[idx].to(device), labels[idx].to(device))
                yield dm.on_after_batch_transfer(batch, 0)[0]

        return batches()

    # ---- Lightning hooks ----------------------------------------------------------------------

    def on_fit_start(self, trainer, pl_module) -> None:
        pending = self._pending
        self._reset()
        self._pending = pending

    def on_train_start(self, trainer, pl_module) -> None:
        self._apply_pending(trainer, pl_module)
        self.to_train_point(trainer, pl_module)
        for opt in self._optimizers(trainer):
            if not all(g["train_mode"] for g in opt.param_groups):
                opt.train()  # built elsewhere, or resumed from a checkpoint saved in eval mode without our key

    def on_validation_start(self, trainer, pl_module) -> None:
        self._apply_pending(trainer, pl_module)  # the sanity check of a resumed run comes before on_train_start
        self.to_eval_point(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self.to_train_point(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.to_eval_point(trainer, pl_module)  # the trained model is x

    def on_test_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path:  # weights just loaded from a checkpoint: lit_opt's hold x already
            self._detached, self._train_point = True, None
            return
        self.to_eval_point(trainer, pl_module)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Lightning calls this when a fit resumes; the optimizer state is loaded after it.
        self._pending = checkpoint.get(CHECKPOINT_KEY)
        self._bn_cache = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        optimizers = self._optimizers(trainer)
        if not optimizers or self._detached:
            return
        self._apply_pending(trainer, pl_module)
        was_at_x = self.at_eval_point
        self.to_eval_point(trainer, pl_module)
        if not self.at_eval_point:
            return  # not at a training point of ours: the weights are saved as they are
        try:
            x = {name: t.detach().clone() for name, t in self._tensors(pl_module, optimizers).items()}
            y = dict(self._train_point)
        finally:
            if not was_at_x:
                self.to_train_point(trainer, pl_module)
        weights = checkpoint["state_dict"]
        for name, value in x.items():
            if name in weights:
                weights[name] = value
        checkpoint[CHECKPOINT_KEY] = {"format": CHECKPOINT_FORMAT, "train_point": y}
        # The weights saved are x: the optimizer state says eval mode, as the authors save it.
        states = checkpoint.get("optimizer_states") or []
        for opt, state in zip(trainer.optimizers, states):
            if switchable(opt) is not None:
                for group in state["param_groups"]:
                    if "train_mode" in group:
                        group["train_mode"] = False
