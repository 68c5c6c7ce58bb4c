"""What each optimizer step did to each layer: the weights' norm, the norm of the update the
optimizer actually applied, their ratio, and (less often) histograms of the weights, the
gradients and the effective per-parameter step size.

The update is measured, not reconstructed: the weights are copied just before the optimizer
steps and subtracted just after it (torch's public `register_step_pre_hook` /
`register_step_post_hook`), so it is the real change for every optimizer and strategy: SGD's
-lr*g, Adam's preconditioned step, weight decay included, gd's one step per epoch, SAM's step
(taken at w, from the gradient at w + e; the hook brackets the whole of SAM's step), Schedule-
Free's move of its training point. Only on the steps the cadence picks: a step in between
costs nothing but a modulo.

Everything stays on the device and is moved to the host by the stream's flush with the other
series (no synchronisation of its own): per-tensor norms are combined into layers there (one
matrix product, as GradNorms does), and histograms are made with scatter_add over bins between
each layer's min and max computed on the device (torch.histc would need them on the host).

A histogram row is, per layer, [min, max, sum, sum of squares, count per bin...] over the
layer's parameters: what TensorBoard's `add_histogram_raw` takes, and what the app draws as
a bins x step heat map. The effective step size is log10(|delta w| / |g|) per parameter
(parameters whose gradient or update is exactly zero are left out of that one): for SGD it is
log10(lr) everywhere, for an adaptive method its spread shows the per-parameter rates.

Read Cohen et al. and Karpathy for why the ratio matters: ||delta w|| / ||w|| near 1e-3 per
layer is the usual sign of a learning rate that neither stalls nor thrashes.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from lit_opt.diagnostics.grad_norms import parameter_layers
from lit_opt.internals import per_tensor_norms
from lit_opt.stream import Series, Source

BINS = 30
# Defaults measured in benchmarks/diagnostics_cost.py (docs/performance.md): together under 5%
# of an epoch for the deep MLP and LeNet-5 on 2 CPU cores.
EVERY = 25
HISTOGRAMS_EVERY = 250

HISTOGRAMS = ("hist/weights", "hist/grads", "hist/step_size")


class LayerUpdates(Source):
    series = (
        Series("train/weight_norm", kind="vector", label="weight norm per layer"),
        Series("train/update_norm", kind="vector", label="norm of the applied update per layer"),
        Series("train/update_ratio", kind="vector", label="update norm / weight norm per layer"),
        Series("hist/weights", kind="histogram", label="weights"),
        Series("hist/grads", kind="histogram", label="gradients"),
        Series("hist/step_size", kind="histogram", label="log10 |delta w| / |g|"),
    )

    def __init__(self, every: int = EVERY, histograms_every: int = HISTOGRAMS_EVERY, bins: int = BINS):
        self.every, self.histograms_every, self.bins = int(every or 0), int(histograms_every or 0), int(bins)
        self._trainer = None
        self._handles: list = []
        self._params: list[torch.nn.Parameter] = []
        self._layers: list[list[int]] = []  # per layer, indices into _params
        self._labels: list[str] = []
        self._matrix = torch.zeros(0, 0)  # tensors x layers, to combine squared norms
        self._before: Optional[list[torch.Tensor]] = None
        self._wanted = (False, False)  # (norms, histograms) for the step being taken
        self._got: dict = {}

    def start(self, trainer, pl_module) -> Optional[dict]:
        if self.every <= 0 and self.histograms_every <= 0:
            return None
        layers = parameter_layers(pl_module.net)
        self._labels = [label for label, _ in layers]
        self._params, self._layers = [], []
        for _, params in layers:
            self._layers.append(list(range(len(self._params), len(self._params) + len(params))))
            self._params.extend(params)
        self._matrix = torch.zeros(len(self._params), len(self._labels))
        for j, idx in enumerate(self._layers):
            self._matrix[idx, j] = 1.0
        self._trainer = trainer
        for handle in self._handles:  # a second fit of the same source (a resume in one process)
            handle.remove()
        self._handles = []
        for opt in trainer.optimizers:
            self._handles.append(opt.register_step_pre_hook(self._before_step))
            self._handles.append(opt.register_step_post_hook(self._after_step))
        names = {}
        if self.every > 0:
            names.update({s.name: list(self._labels) for s in self.series if s.kind == "vector"})
        if self.histograms_every > 0:
            names.update({name: list(self._labels) for name in HISTOGRAMS})
        return names

    def _due(self, step: int) -> tuple[bool, bool]:
        return (self.every > 0 and step % self.every == 0,
                self.histograms_every > 0 and step % self.histograms_every == 0)

    def _before_step(self, optimizer, args, kwargs) -> None:
        norms, histograms = self._due(self._trainer.global_step)
        if norms or histograms:
            with torch.no_grad():
                self._before = [p.detach().clone() for p in self._params]
            self._wanted = (norms, histograms)

    def _after_step(self, optimizer, args, kwargs) -> None:
        before, self._before = self._before, None
        if before is None:
            return
        norms, histograms = self._wanted
        with torch.no_grad():
            after = [p.detach() for p in self._params]
            delta = [a - b for a, b in zip(after, before)]
            got = {}
            if norms:
                matrix = self._matrix = self._matrix.to(after[0].device)
                weight = (torch.stack(per_tensor_norms(after)).float().square() @ matrix).sqrt()
                update = (torch.stack(per_tensor_norms(delta)).float().square() @ matrix).sqrt()
                got["train/weight_norm"], got["train/update_norm"] = weight, update
                got["train/update_ratio"] = update / weight  # inf/NaN for an all-zero layer, as it is
            if histograms:
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._params]
                got["hist/weights"] = self._histogram(after)
                got["hist/grads"] = self._histogram(grads)
                got["hist/step_size"] = self._histogram([_log_ratio(d, g) for d, g in zip(delta, grads)],
                                                        drop_nan=True)
        self._got = got

    def _histogram(self, tensors: list[torch.Tensor], drop_nan: bool = False) -> torch.Tensor:
        """(layers, 4 + bins): min, max, sum, sum of squares, counts; with drop_nan, NaN values
        are left out by weighting them 0 (boolean indexing would make the host wait on a GPU)."""
        rows = []
        for idx in self._layers:
            v = torch.cat([tensors[i].detach().reshape(-1) for i in idx]).float()
            if drop_nan:
                valid = ~torch.isnan(v)
                weight = valid.float()
                lo = torch.where(valid, v, torch.inf).min()
                hi = torch.where(valid, v, -torch.inf).max()
                v = torch.where(valid, v, torch.zeros_like(v))
                lo, hi = torch.nan_to_num(lo, posinf=0.0), torch.nan_to_num(hi, neginf=0.0)  # none valid: 0
            else:
                weight = torch.ones_like(v)
                lo, hi = torch.aminmax(v)
            scale = self.bins / (hi - lo).clamp_min(1e-30)
            bins = ((v - lo) * scale).long().clamp_(0, self.bins - 1)
            counts = torch.zeros(self.bins, device=v.device).index_add_(0, bins, weight)
            rows.append(torch.cat([torch.stack([lo, hi, v.sum(), v.dot(v)]), counts]))
        return torch.stack(rows)

    def step(self, trainer, pl_module) -> dict:
        got, self._got = self._got, {}
        return got

    def to_host(self, name: str, values: torch.Tensor) -> list:
        return values.tolist()  # histograms: per row, per layer [min, max, sum, sumsq, counts...]


def _log_ratio(delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """log10(|delta w| / |g|) per parameter; NaN where either is exactly zero (left out)."""
    ratio = delta.abs() / grad.abs()
    out = torch.log10(ratio)
    return torch.where((delta == 0) | (grad == 0), torch.full_like(out, math.nan), out)
