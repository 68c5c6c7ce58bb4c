"""Sharpness, live: the top Hessian eigenvalue of the training objective every `every`
optimizer steps, beside the stability threshold of the optimizer in use (Cohen et al. 2021,
"edge of stability"; lit_opt/hessian.py has the objective and the formulas).

    LiveStream([..., Sharpness(every=10)], listeners)       # series train/sharpness, train/stability_threshold

Measured on a fixed, seeded subset of the run's training split (drawn once when training
starts), with dropout off and BatchNorm on its running statistics, by power iteration
warm-started from the previous measurement's vector (a few Hessian-vector products when the
weights moved little). It leaves the run exactly as it was: it works on a copy of the
weights through torch.func (no .grad is written), draws its random start from its own
generator, restores every module's train/eval flag and, as a guard, the global RNG state;
final weights, batches and dropout masks are the same with it on or off.

The threshold uses the learning rate at the batch's end, the one the next step takes. For
an optimizer without a plain threshold (adaptive methods, SAM) only the sharpness is given,
and its label says why. Costs (docs/performance.md, "Sharpness and landscapes"): each
measurement is up to `max_iter` Hessian-vector products over `samples` images.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch

from lit_opt.stream import Series, Source


class Sharpness(Source):
    series = (Series("train/sharpness", label="top Hessian eigenvalue of the training objective"),
              Series("train/stability_threshold", label="stability threshold of the optimizer"))

    def __init__(self, every: Optional[int] = None, samples: int = 1000, seed: int = 0, tol: float = 1e-3,
                 max_iter: int = 20, batch_size: int = 1000):
        from lit_opt.errors import ConfigError

        if every is not None and (not isinstance(every, int) or every < 0):
            raise ConfigError(f"sharpness every must be a whole number of steps >= 0 (0 or null: off); got {every!r}")
        if samples < 1:
            raise ConfigError(f"sharpness samples must be at least 1; got {samples}")
        self.every, self.samples, self.seed = every or 0, samples, seed
        self.tol, self.max_iter, self.batch_size = tol, max_iter, batch_size
        self._data: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._vector: Optional[dict] = None
        self._last_step = -1
        self._has_threshold = True

    def start(self, trainer, pl_module):
        if not self.every:
            return None
        datamodule = getattr(trainer, "datamodule", None)
        train_set = getattr(datamodule, "train_set", None)
        if train_set is None:  # no lit_opt data module: nothing to measure on
            return None
        from lit_opt.hessian import NOTE, threshold_of
        from lit_opt.subsets import normalized

        images, labels = train_set
        n = min(self.samples, len(labels))
        idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))[:n].sort().values
        x = normalized(images[idx.to(images.device)], datamodule.info).to(pl_module.device)
        self._data = (x, labels[idx.to(labels.device)].to(pl_module.device))
        self._vector, self._last_step = None, -1
        _, formula = threshold_of(pl_module)
        self._has_threshold = threshold_of(pl_module)[0] is not None
        sharp, thresh = type(self).series
        about = f"{n} training images, seed {self.seed}, every {self.every} steps; {NOTE}"
        if self._has_threshold:
            self.series = (replace(sharp, label=f"{sharp.label} ({about})"),
                           replace(thresh, label=f"stability threshold {formula}"))
        else:
            self.series = (replace(sharp, label=f"{sharp.label} ({about}); {formula}"),)
        return {}

    def step(self, trainer, pl_module) -> dict:
        step = trainer.global_step
        if self._data is None or step % self.every or step == self._last_step:
            return {}
        self._last_step = step
        value = self.measure(pl_module)
        row = {"train/sharpness": value}
        if self._has_threshold and trainer.optimizers:
            from lit_opt.hessian import threshold_of

            from lit_opt.steering import steering_callback

            lr = float(trainer.optimizers[0].param_groups[0]["lr"])
            steering = steering_callback(trainer)  # the rate the step takes, a steered factor included
            lr *= steering.lr_factor_at(step) if steering is not None else 1.0
            row["train/stability_threshold"] = threshold_of(pl_module, lr)[0]
        return row

    def measure(self, pl_module) -> float:
        """The top eigenvalue at the module's current weights; the run's state untouched."""
        from lit_opt.hessian import TrainingObjective

        device = pl_module.device
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        try:
            objective = TrainingObjective(pl_module, *self._data, batch_size=self.batch_size)
            top = objective.top_eigenvalue(seed=self.seed, tol=self.tol, max_iter=self.max_iter,
                                           start=self._vector)
        finally:
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, device)
        self._vector = top["vector"]
        return float(top["lambda_max"])
