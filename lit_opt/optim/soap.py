"""SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"), as the
authors' nikhilvyas/SOAP `soap.py` (commit a1e5535, with its "momentum change").

Per tensor W (a matrix here; see `merge_dims` and `max_precond_dim` for others), with G the
gradient, Shampoo's two statistics L (rows) and R (columns) and their eigenbases Q_L, Q_R:

    first step: L = (1-b) G G^T, R = (1-b) G^T G, Q = eigh(L), eigh(R); no update
    then:  G' = Q_L^T G Q_R                          (the gradient in the eigenbasis)
           m <- b1 m + (1-b1) G'                     (kept in the current eigenbasis)
           v <- b2 v + (1-b2) G'^2
           W <- W - lr sqrt(1-b2^t)/(1-b1^t) Q_L (m / (sqrt(v) + eps)) Q_R^T
           W <- W - lr*weight_decay*W                 (decoupled, after the step)
           L <- lerp(L, G G^T, 1-b), R likewise      (b = shampoo_beta, or b2 if negative)
           every precondition_frequency steps: Q <- QR(L Q[:, sorted by estimated eigenvalue])
           (one power iteration; v's coordinates are reordered the same way, not rotated)
           m is rotated from the old eigenbasis to the new one.

t counts the updates (the first call only sets up). A dimension larger than max_precond_dim,
and a vector unless precondition_1d, is left unrotated (identity). The authors keep m in the
original space before their "momentum change" commit; the two are equal (Q is orthogonal).

Why not pytorch_optimizer.SOAP (4.1): its default path is the authors' algorithm, but
- merge_dims does not merge as the authors' code does: its merge_small_dims returns [1] when
  all dimensions fit in max_precond_dim, so a 3x4 weight fails to reshape ("shape '[1]' is
  invalid for input of size 12"), and it adds a dimension of 1 before one larger than
  max_precond_dim;
- normalize_grads divides by RMS + eps, the authors' by RMS + 1e-30;
- it counts steps per parameter group, the authors per parameter (a parameter whose first
  gradient comes late is updated with a basis built from that same gradient, and bias-corrected
  with the group's count).
So this is our own, from the authors' code.

Two choices: data_format is fixed at "channels_first" (lit_opt's conv kernels are
(out, in, h, w); torch's channels_last memory format does not change that), and the
preconditioner is kept in the parameter's dtype with eigh/QR in that dtype (float32 when the
parameter is float32, as the authors; in float64 all of it is float64, where the authors' code
keeps the statistics in float32; half-precision parameters are decomposed in float32 as theirs).
"""

from __future__ import annotations

from itertools import chain

import torch
from torch.optim import Optimizer


class SOAP(Optimizer):
    """Adam in the eigenbasis of Shampoo's preconditioner, with the authors' defaults:
    lr 3e-3, betas (0.95, 0.95), shampoo_beta -1 (use betas[1]), eps 1e-8, weight decay 0.01
    (decoupled), eigenbasis refreshed every 10 steps, dimensions up to 10000 preconditioned."""

    def __init__(self, params, lr: float = 3e-3, betas: tuple[float, float] = (0.95, 0.95),
                 shampoo_beta: float = -1, eps: float = 1e-8, weight_decay: float = 0.01,
                 precondition_frequency: int = 10, max_precond_dim: int = 10000,
                 merge_dims: bool = False, precondition_1d: bool = False,
                 normalize_grads: bool = False, correct_bias: bool = True):
        if not lr > 0.0:
            raise ValueError(f"soap: lr must be > 0; got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"soap: betas must be 2 numbers in [0, 1); got {betas}")
        if not shampoo_beta < 1.0:
            raise ValueError(f"soap: shampoo_beta must be < 1 (negative: use betas[1]); got {shampoo_beta}")
        if not (eps >= 0.0 and weight_decay >= 0.0):
            raise ValueError("soap: eps and weight_decay must be >= 0")
        if precondition_frequency < 1 or max_precond_dim < 1:
            raise ValueError("soap: precondition_frequency and max_precond_dim must be >= 1")
        super().__init__(params, dict(
            lr=lr, betas=tuple(betas), shampoo_beta=shampoo_beta, eps=eps,
            weight_decay=weight_decay, precondition_frequency=int(precondition_frequency),
            max_precond_dim=int(max_precond_dim), merge_dims=merge_dims,
            precondition_1d=precondition_1d, normalize_grads=normalize_grads,
            correct_bias=correct_bias))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            merge, max_dim = group["merge_dims"], group["max_precond_dim"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("SOAP does not support sparse gradients")
                grad = p.grad
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(grad)
                    state["exp_avg_sq"] = torch.zeros_like(grad)
                if "Q" not in state:
                    shampoo_beta = group["shampoo_beta"]
                    state["shampoo_beta"] = shampoo_beta if shampoo_beta >= 0 else beta2
                    state["precondition_frequency"] = group["precondition_frequency"]
                    state["GG"] = _init_statistics(grad, max_dim, merge, group["precondition_1d"])
                    state["Q"] = None
                    self._update_preconditioner(grad, state, max_dim, merge, group["precondition_1d"])
                    continue  # the authors: never use the current gradient in its own projection

                grad_projected = _project(grad, state["Q"], merge, max_dim)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad_projected, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).add_(grad_projected.square(), alpha=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])

                step_size = group["lr"]
                if group["correct_bias"]:
                    bias_correction1 = 1.0 - beta1 ** state["step"]
                    bias_correction2 = 1.0 - beta2 ** state["step"]
                    step_size = step_size * (bias_correction2 ** 0.5) / bias_correction1

                norm_grad = _project_back(exp_avg / denom, state["Q"], merge, max_dim)
                if group["normalize_grads"]:
                    norm_grad = norm_grad / (1e-30 + torch.mean(norm_grad ** 2) ** 0.5)
                p.add_(norm_grad, alpha=-step_size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
                self._update_preconditioner(grad, state, max_dim, merge, group["precondition_1d"])
        return loss

    @staticmethod
    def _update_preconditioner(grad, state, max_dim, merge, precondition_1d) -> None:
        """Statistics L, R (state["GG"]) and, when due, their eigenbases (state["Q"]); the
        momentum is rotated from the old eigenbasis to the new one."""
        if state["Q"] is not None:
            state["exp_avg"] = _project_back(state["exp_avg"], state["Q"], merge, max_dim)
        weight = 1 - state["shampoo_beta"]
        if grad.dim() == 1:
            if precondition_1d and grad.shape[0] <= max_dim:
                state["GG"][0].lerp_(grad.unsqueeze(1) @ grad.unsqueeze(0), weight)
        else:
            g = _merge_dims(grad, max_dim) if merge else grad
            for idx, size in enumerate(g.shape):
                if size <= max_dim:
                    others = [*chain(range(idx), range(idx + 1, g.dim()))]
                    state["GG"][idx].lerp_(torch.tensordot(g, g, dims=[others] * 2), weight)
        if state["Q"] is None:
            state["Q"] = _eigenbases(state["GG"])
        if state["step"] > 0 and state["step"] % state["precondition_frequency"] == 0:
            state["Q"] = _power_iteration_qr(state, max_dim, merge)
        if state["step"] > 0:
            state["exp_avg"] = _project(state["exp_avg"], state["Q"], merge, max_dim)


def _merge_dims(grad: torch.Tensor, max_dim: int) -> torch.Tensor:
    """The authors' merge_dims: merge neighbouring dimensions while their product stays
    <= max_dim (channels_first)."""
    new_shape, current = [], 1
    for size in grad.shape:
        merged = current * size
        if merged > max_dim:
            if current > 1:
                new_shape.append(current)
                current = size
            else:
                new_shape.append(size)
                current = 1
        else:
            current = merged
    if current > 1 or not new_shape:
        new_shape.append(current)
    return grad.reshape(new_shape)


def _init_statistics(grad, max_dim, merge, precondition_1d) -> list:
    if grad.dim() == 1:
        if not precondition_1d or grad.shape[0] > max_dim:
            return [[]]
        return [torch.zeros(grad.shape[0], grad.shape[0], device=grad.device, dtype=grad.dtype)]
    g = _merge_dims(grad, max_dim) if merge else grad
    return [[] if size > max_dim else torch.zeros(size, size, device=grad.device, dtype=grad.dtype)
            for size in g.shape]


def _rotate(x: torch.Tensor, Q: list, merge: bool, max_dim: int, back: bool) -> torch.Tensor:
    """Contract each dimension with its eigenbasis (Q^T x forward, Q x back); a dimension
    without one is cycled to the end unchanged, as the authors' project/project_back."""
    shape = x.shape
    if merge:
        x = _merge_dims(x, max_dim)
    for mat in Q:
        if len(mat) > 0:
            x = torch.tensordot(x, mat, dims=[[0], [1 if back else 0]])
        else:
            x = x.permute([*range(1, x.dim()), 0])
    return x.reshape(shape) if merge else x


def _project(x, Q, merge, max_dim):
    return _rotate(x, Q, merge, max_dim, back=False)


def _project_back(x, Q, merge, max_dim):
    return _rotate(x, Q, merge, max_dim, back=True)


def _work_dtype(m: torch.Tensor) -> torch.dtype:
    # The authors decompose in float32; float64 statistics stay float64 here (see the top).
    return m.dtype if m.dtype in (torch.float32, torch.float64) else torch.float32


def _eigenbases(statistics: list) -> list:
    """Eigenvectors of each statistic, largest eigenvalue first (torch.linalg.eigh, flipped)."""
    out = []
    for m in statistics:
        if len(m) == 0:
            out.append([])
            continue
        work = m.to(_work_dtype(m))
        eye = torch.eye(m.shape[0], device=m.device, dtype=work.dtype)
        try:
            _, Q = torch.linalg.eigh(work + 1e-30 * eye)
        except RuntimeError:  # the authors' fallback: retry in float64
            _, Q = torch.linalg.eigh(work.double() + 1e-30 * eye.double())
            Q = Q.to(work.dtype)
        out.append(torch.flip(Q, [1]).to(m.dtype))
    return out


def _power_iteration_qr(state: dict, max_dim: int, merge: bool) -> list:
    """One power iteration from the current eigenbasis, sorted by the estimated eigenvalues
    diag(Q^T M Q) (largest first), then QR; exp_avg_sq's coordinates are sorted alike."""
    exp_avg_sq = state["exp_avg_sq"]
    shape = exp_avg_sq.shape
    if merge:
        exp_avg_sq = _merge_dims(exp_avg_sq, max_dim)
    out = []
    for ind, (m, o) in enumerate(zip(state["GG"], state["Q"])):
        if len(m) == 0:
            out.append([])
            continue
        dtype = _work_dtype(m)
        m, o = m.to(dtype), o.to(dtype)
        est_eig = torch.diag(o.T @ m @ o)
        sort_idx = torch.argsort(est_eig, descending=True)
        exp_avg_sq = exp_avg_sq.index_select(ind, sort_idx)
        Q, _ = torch.linalg.qr(m @ o[:, sort_idx])
        out.append(Q.to(state["GG"][ind].dtype))
    state["exp_avg_sq"] = exp_avg_sq.reshape(shape) if merge else exp_avg_sq
    return out
