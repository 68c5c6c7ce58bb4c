"""Prodigy (Mishchenko & Defazio 2024), as the authors' konstmish/prodigy `prodigyopt/prodigy.py`
(commit 3efb213): Adam whose step size d is estimated on the fly, so lr stays at 1.

With k the step (from 0), dlr = d * lr * (sqrt(1 - b2^(k+1)) / (1 - b1^(k+1)) if bias
correction, else 1), and sums over all parameters:

    g <- g + weight_decay * w                         (only when decouple is off)
    r <- b3 r + (d/d0) dlr <g, w0 - w>                (b3 = sqrt(b2) unless given)
    s <- b3 s + (d/d0) dlr g                          (d instead of dlr with safeguard_warmup)
    m <- b1 m + (1-b1) d g,   v <- b2 v + (1-b2) d^2 g^2
    d_hat = d_coef * r / ||s||_1
    d <- max(d, d_hat) only while d is still d0;  d_max <- max(d_max, d_hat);
    d <- min(d_max, d * growth_rate)
    w <- w - dlr * weight_decay * w                   (when decouple is on)
    w <- w - dlr * m / (sqrt(v) + d * eps)            (with the d and dlr from before the update)

Every param group carries the new "d" (and d_max, d_hat, the numerator r and ||s||_1), as the
authors' code does: `param_groups[0]["d"]` is the step size Prodigy chose; lit_opt logs it as
the series train/d.

Why not pytorch_optimizer.Prodigy (4.1): with weight_decouple=False (the authors'
decouple=False) it adds the L2 term to the gradient only after the moments have been
updated, so coupled weight decay has no effect at all (measured: weight_decay 0.5 and 0 give
the same run); and it accumulates r and ||s||_1 in a float32 tensor, where the authors sum
in Python floats (float64). So this is our own, from the authors' code, without its FSDP and
slice_p options (slice_p = 1 is exact Prodigy, the authors' default).

As in the authors' code, every group's lr must be the same (or 0, which freezes the group's
moments but still applies a decoupled decay with the shared dlr), and the largest lr is used.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


class Prodigy(Optimizer):
    """The authors' defaults: lr 1, betas (0.9, 0.999), beta3 None (sqrt(beta2); 0 here means
    the same), eps 1e-8, weight decay 0 (decoupled), no bias correction, no safeguard warm-up,
    d0 1e-6, d_coef 1, growth_rate inf."""

    def __init__(self, params, lr: float = 1.0, betas: tuple[float, float] = (0.9, 0.999),
                 beta3: float | None = None, eps: float = 1e-8, weight_decay: float = 0.0,
                 decouple: bool = True, use_bias_correction: bool = False,
                 safeguard_warmup: bool = False, d0: float = 1e-6, d_coef: float = 1.0,
                 growth_rate: float = float("inf")):
        if not d0 > 0.0:
            raise ValueError(f"prodigy: d0 must be > 0; got {d0}")
        if not lr > 0.0:
            raise ValueError(f"prodigy: lr must be > 0; got {lr}")
        if not eps > 0.0:
            raise ValueError(f"prodigy: eps must be > 0; got {eps}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"prodigy: betas must be 2 numbers in [0, 1); got {betas}")
        super().__init__(params, dict(
            lr=lr, betas=tuple(betas), beta3=beta3, eps=eps, weight_decay=weight_decay,
            d=d0, d0=d0, d_max=d0, d_numerator=0.0, d_coef=d_coef, k=0,
            growth_rate=growth_rate, use_bias_correction=use_bias_correction,
            decouple=decouple, safeguard_warmup=safeguard_warmup))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        beta3 = group["beta3"] if group["beta3"] else math.sqrt(beta2)  # None or 0: the authors' None
        k, d, d_max, d_coef = group["k"], group["d"], group["d_max"], group["d_coef"]
        lr = max(g["lr"] for g in self.param_groups)
        bias_correction = (((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1))
                           if group["use_bias_correction"] else 1.0)
        dlr = d * lr * bias_correction
        growth_rate, decouple = group["growth_rate"], group["decouple"]
        d_numerator = group["d_numerator"] * beta3
        delta_numerator, d_denom = 0.0, 0.0

        for group in self.param_groups:
            decay, group_lr, d0 = group["weight_decay"], group["lr"], group["d0"]
            if group_lr not in (lr, 0.0):
                raise RuntimeError("prodigy: every param group needs the same lr (or 0)")
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if decay != 0 and not decouple:
                    grad.add_(p, alpha=decay)
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    state["s"] = torch.zeros_like(p).flatten()
                    state["p0"] = p.flatten().clone()
                    if beta1 > 0:
                        state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                if group_lr > 0.0:
                    flat = grad.flatten()
                    delta_numerator += (d / d0) * dlr * torch.dot(flat, state["p0"] - p.flatten()).item()
                    if beta1 > 0:
                        state["exp_avg"].mul_(beta1).add_(grad, alpha=d * (1 - beta1))
                    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=d * d * (1 - beta2))
                    scale = (d / d0) * (d if group["safeguard_warmup"] else dlr)
                    state["s"].mul_(beta3).add_(flat, alpha=scale)
                    d_denom += state["s"].abs().sum().item()

        d_hat = d
        if d_denom == 0:  # no gradient yet (or all zero): nothing to estimate, no step
            return loss
        if lr > 0.0:
            d_numerator += delta_numerator
            d_hat = d_coef * d_numerator / d_denom
            if d == self.param_groups[-1]["d0"]:  # the authors' loop variable: the last group
                d = max(d, d_hat)
            d_max = max(d_max, d_hat)
            d = min(d_max, d * growth_rate)

        for group in self.param_groups:
            group.update(d_numerator=d_numerator, d_denom=d_denom, d=d, d_max=d_max, d_hat=d_hat)
            decay, eps = group["weight_decay"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] += 1
                denom = state["exp_avg_sq"].sqrt().add_(d * eps)
                if decay != 0 and decouple:
                    p.add_(p, alpha=-decay * dlr)
                if beta1 > 0:
                    p.addcdiv_(state["exp_avg"], denom, value=-dlr)
                else:
                    p.addcdiv_(p.grad, denom, value=-dlr * d)
            group["k"] = group["k"] + 1
        return loss
