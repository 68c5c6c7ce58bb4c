"""Expectigrad (Daley & Amato 2020, "Expectigrad: Fast Stochastic Optimization with
Robust Convergence Properties", arXiv:2010.01356), following the authors' reference
code (github.com/brett-daley/expectigrad, expectigrad/pytorch). Per element, t = 1, 2, ...:

    s <- s + g^2                 running sum of squared gradients
    n <- n + sign(g^2)           steps where g != 0 (sparse counter; sparse_counter=False: n = t)
    a = s / n                    with 0/0 taken as 0
    u = g / (sqrt(a) + eps)
    m <- beta*m + (1-beta)*u
    w <- w - lr / (1 - beta^t) * m

(beta = 0 skips the momentum: w <- w - lr*u.) The seed document's sqrt(n/n) is a
typo for sqrt(s/n). The reference has no weight decay; ours adds the usual
coupled L2 term, g <- g + weight_decay*w, before everything else (default 0, so
the default matches the reference exactly). A decayed coordinate with w != 0 then
counts as active in the sparse counter, as an explicit L2 penalty in the loss would.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class Expectigrad(Optimizer):
    """Expectigrad: arithmetic (not exponential) mean of past squared gradients."""

    def __init__(self, params, lr: float = 1e-3, beta: float = 0.9, eps: float = 1e-8,
                 sparse_counter: bool = True, weight_decay: float = 0.0):
        if not lr > 0.0:
            raise ValueError(f"expectigrad: lr must be > 0; got {lr}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"expectigrad: beta must be in [0, 1); got {beta}")
        if not eps > 0.0:
            raise ValueError(f"expectigrad: eps must be > 0; got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"expectigrad: weight_decay must be >= 0; got {weight_decay}")
        super().__init__(params, dict(lr=lr, beta=beta, eps=eps, sparse_counter=sparse_counter,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta = group["beta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Expectigrad does not support sparse gradients")
                grad = p.grad
                if group["weight_decay"] != 0.0:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["sum"] = torch.zeros_like(p)
                    state["counter"] = torch.zeros_like(p)
                    state["momentum"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                grad_sq = grad.square()
                state["sum"].add_(grad_sq)
                state["counter"].add_(grad_sq.sign())  # kept in both modes so a switch is safe
                if group["sparse_counter"]:
                    n = state["counter"]
                    mean = torch.where(n > 0, state["sum"] / n.clamp(min=1), torch.zeros_like(n))
                else:
                    mean = state["sum"] / t
                u = grad / (mean.sqrt() + group["eps"])
                if beta > 0.0:
                    m = state["momentum"].mul_(beta).add_(u, alpha=1.0 - beta)
                    p.add_(m, alpha=-group["lr"] / (1.0 - beta ** t))
                else:
                    p.add_(u, alpha=-group["lr"])
        return loss
