"""AdEMAMix (Pagliardini, Ablin & Grangier 2024), as apple/ml-ademamix `pytorch/ademamix.py`.

Adam's fast EMA of the gradient plus a slow one (beta3 close to 1), mixed with weight alpha:

    m1 <- b1*m1 + (1-b1)*g           (fast; with b1 = 0 it is g itself)
    m2 <- b3*m2 + (1-b3)*g           (slow, not bias-corrected)
    v  <- b2*v  + (1-b2)*g^2
    u  = (m1/(1-b1^t) + alpha*m2) / (sqrt(v)/sqrt(1-b2^t) + eps) + weight_decay*w
    w  <- w - lr*u

with two separate warm-ups, each off when its length is 0 (the authors' None):
alpha rises linearly from 0 to alpha over alpha_warmup steps, and beta3 rises from b1 to b3
over beta3_warmup steps linearly in the EMA's half-life, f(b) = log(0.5)/log(b + 1e-8) - 1,
b = 0.5^(1/(f+1)). The paper sets both warm-ups to the run's total number of steps.

Why not pytorch_optimizer.AdEMAMix (4.1): it has one shared warm-up (t_alpha_beta3) for both,
so it cannot reproduce the authors' separate schedules, and other defaults (alpha 5, weight
decay coupled unless weight_decouple=True).
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


def alpha_at(step: int, alpha: float, warmup: int) -> float:
    """The authors' linear_warmup_scheduler, from 0 to alpha."""
    if warmup and step < warmup:
        a = step / float(warmup)
        return a * alpha
    return alpha


def beta3_at(step: int, beta3: float, beta_start: float, warmup: int) -> float:
    """The authors' linear_hl_warmup_scheduler: linear in the half-life, from beta_start (b1)."""
    if not warmup or step >= warmup:
        return beta3

    def half_life(beta, eps=1e-8):
        return math.log(0.5) / math.log(beta + eps) - 1

    a = step / float(warmup)
    return math.pow(0.5, 1 / ((1.0 - a) * half_life(beta_start) + a * half_life(beta3) + 1))


class AdEMAMix(Optimizer):
    """AdEMAMix with the authors' defaults: lr 1e-3, betas (0.9, 0.999, 0.9999), alpha 2,
    eps 1e-8, weight decay 0 (AdamW-style), no warm-ups."""

    def __init__(self, params, lr: float = 1e-3,
                 betas: tuple[float, float, float] = (0.9, 0.999, 0.9999), alpha: float = 2.0,
                 alpha_warmup: int = 0, beta3_warmup: int = 0, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if not lr > 0.0:
            raise ValueError(f"ademamix: lr must be > 0; got {lr}")
        if len(betas) != 3 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"ademamix: betas must be 3 numbers in [0, 1); got {betas}")
        if not (alpha >= 0.0 and eps >= 0.0 and weight_decay >= 0.0):
            raise ValueError("ademamix: alpha, eps and weight_decay must be >= 0")
        if alpha_warmup < 0 or beta3_warmup < 0:
            raise ValueError("ademamix: warm-up lengths must be >= 0 (0: no warm-up)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), alpha=alpha,
                                      alpha_warmup=int(alpha_warmup),
                                      beta3_warmup=int(beta3_warmup), eps=eps,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2, beta3_final = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdEMAMix does not support sparse gradients")
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg_fast"] = torch.zeros_like(p)
                    state["exp_avg_slow"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                alpha = alpha_at(t, group["alpha"], group["alpha_warmup"])
                beta3 = beta3_at(t, beta3_final, beta1, group["beta3_warmup"])
                fast, slow, sq = state["exp_avg_fast"], state["exp_avg_slow"], state["exp_avg_sq"]
                if beta1 != 0.0:
                    fast.mul_(beta1).add_(grad, alpha=1 - beta1)
                else:
                    fast = grad
                slow.mul_(beta3).add_(grad, alpha=1 - beta3)
                sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (sq.sqrt() / math.sqrt(1 - beta2 ** t)).add_(group["eps"])
                update = (fast.div(1 - beta1 ** t) + alpha * slow) / denom
                update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
        return loss
