"""Curvature of a classifier's training objective: Hessian-vector products, the top
eigenvalue (sharpness) by power iteration, the trace by Hutchinson's estimator.

    obj = TrainingObjective(model, x, y)          # model: a ClassifierModule; x, y: a fixed subset
    top = obj.top_eigenvalue(seed=0)              # {"lambda_max", "iterations", "converged", ...}
    tr = obj.trace(probes=100, seed=0)            # {"trace", "stderr", "probes"}
    value, formula = stability_threshold("momentum", lr=0.01, momentum=0.9)   # 380.0, "(2 + 2·0.9)/lr"

The objective is the one training minimises, measured on the subset: mean cross-entropy
(with the run's label smoothing) plus the L2 penalty lambda * sum(w^2) when the run sets
one, with dropout off and BatchNorm using its running statistics (the net in eval mode),
so it is a fixed function of the weights. The optimizer's own weight_decay is not part of
it (`NOTE` says so in every output).

A Hessian-vector product is forward-over-reverse (torch.func.jvp of torch.func.grad), one
batch of the subset at a time and summed with weights n_b / n, so memory is bounded by one
batch whatever the subset's size; the penalty's Hessian is 2 lambda I on the penalised
weights, added exactly. Nothing here touches the module's parameters, their .grad, the
global RNG or the modules' train/eval flags after it returns (the live sharpness source,
lit_opt/diagnostics/sharpness.py, relies on that).

The stability threshold is the largest sharpness at which the optimizer's update is stable
on a quadratic (Cohen et al. 2021, "Gradient descent on neural networks typically occurs at
the edge of stability"): 2/lr for gd and sgd, (2 + 2 beta)/lr for heavy-ball momentum,
(2 + 2 beta)/(lr (1 + 2 beta)) for Nesterov (torch's formulation). For adaptive methods the
plain threshold does not apply: their step is preconditioned (Cohen et al. 2022).
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp, vmap

from lit_opt.errors import ConfigError

NOTE = ("training objective: cross-entropy (with the run's label smoothing) + the L2 penalty when the "
        "run sets one, on a fixed subset; dropout off and BatchNorm on its running statistics (eval "
        "mode); the optimizer's own weight_decay is not included")

# Power iteration stops when the Rayleigh quotient changes by less than this, relatively.
DEFAULT_TOL = 1e-4
DEFAULT_MAX_ITER = 200
# Images per forward pass in a Hessian-vector product; it bounds the memory (see
# docs/performance.md, "Sharpness and landscapes").
DEFAULT_BATCH = 1000


@contextlib.contextmanager
def eval_mode(net: torch.nn.Module):
    """Every module in eval mode inside, each module's own flag restored after."""
    flags = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _dot(a: dict, b: dict) -> torch.Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def _norm(a: dict) -> torch.Tensor:
    return _dot(a, a).sqrt()


class TrainingObjective:
    """The training objective of `model` (a ClassifierModule, or anything with `.net` and
    `.hparams` l2/label_smoothing) on the fixed data (x, y), as a function of the net's weights.

    x: the net's input (normalized float), y: class indices; `batch_size` images per pass.
    The weights are read when this is built (a copy: later training does not move them).
    `criterion(outputs, y)`, a batch mean, replaces the cross-entropy (tests use a squared
    error, whose Hessian is known in closed form).
    """

    def __init__(self, model, x: torch.Tensor, y: torch.Tensor, batch_size: int = DEFAULT_BATCH,
                 criterion=None):
        if len(x) != len(y) or len(y) == 0:
            raise ConfigError(f"the subset must hold at least one image with one label each; "
                              f"got {len(x)} images and {len(y)} labels")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {batch_size}")
        self.net = model.net
        hp = model.hparams
        self.l2 = float(hp.get("l2", 0.0) or 0.0)
        self.label_smoothing = float(hp.get("label_smoothing", 0.0) or 0.0)
        penalised = {id(p) for p in getattr(model, "decay_params", [])} if self.l2 else set()
        # Every parameter, requires_grad or not: a checkpoint loaded for inference has it off.
        named = list(self.net.named_parameters())
        self.params = {n: p.detach().clone() for n, p in named}
        self.penalised = [n for n, p in named if id(p) in penalised]
        self.buffers = {n: b.detach() for n, b in self.net.named_buffers()}
        device = next(iter(self.params.values())).device
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size = batch_size
        self.criterion = criterion
        self.n = len(y)
        self.dimension = sum(p.numel() for p in self.params.values())

    # --- the function and its derivatives -----------------------------------------------

    def _batches(self):
        for i in range(0, self.n, self.batch_size):
            x, y = self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]
            yield x, y, len(y) / self.n

    def _batch_loss(self, params: dict, x: torch.Tensor, y: torch.Tensor, weight: float) -> torch.Tensor:
        logits = functional_call(self.net, {**params, **self.buffers}, (x,))
        if self.criterion is not None:
            return weight * self.criterion(logits, y)
        return weight * F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def loss(self, params: Optional[dict] = None) -> float:
        """The objective's value at `params` (default: the weights it was built with)."""
        params = self.params if params is None else params
        with eval_mode(self.net), torch.no_grad():
            total = sum(self._batch_loss(params, x, y, w) for x, y, w in self._batches())
            if self.l2:
                total = total + self.l2 * sum(params[n].pow(2).sum() for n in self.penalised)
        return float(total)

    def hvp(self, v: dict) -> dict:
        """H v, H the objective's Hessian at the built weights; v: {name: tensor like the weight}."""
        out = {k: torch.zeros_like(t) for k, t in self.params.items()}
        grad_fn = grad(self._batch_loss)
        with eval_mode(self.net):
            for x, y, w in self._batches():
                # Forward-over-reverse: the directional derivative of the gradient along v.
                _, hv = jvp(lambda p: grad_fn(p, x, y, w), (self.params,), (v,))
                for k in out:
                    out[k].add_(hv[k])
        for n in self.penalised:  # the penalty lambda * ||w||^2 has Hessian 2 lambda I
            out[n].add_(v[n], alpha=2.0 * self.l2)
        return out

    def hvp_many(self, vs: dict) -> dict:
        """H v for k vectors at once: vs {name: tensor (k, *weight shape)}; vmap over the
        tangents, so a pass over the subset serves all k (memory: k times one product's)."""
        k = len(next(iter(vs.values())))
        out = {n: torch.zeros((k, *t.shape), dtype=t.dtype, device=t.device) for n, t in self.params.items()}
        grad_fn = grad(self._batch_loss)
        with eval_mode(self.net):
            for x, y, w in self._batches():
                hv = vmap(lambda v: jvp(lambda p: grad_fn(p, x, y, w), (self.params,), (v,))[1])(vs)
                for n in out:
                    out[n].add_(hv[n])
        for n in self.penalised:
            out[n].add_(vs[n], alpha=2.0 * self.l2)
        return out

    # --- estimates ------------------------------------------------------------------------

    def _random(self, generator: torch.Generator, rademacher: bool) -> dict:
        out = {}
        for k, t in self.params.items():
            if rademacher:
                r = torch.randint(0, 2, t.shape, generator=generator, dtype=torch.int64).to(t.dtype) * 2 - 1
            else:
                r = torch.randn(t.shape, generator=generator, dtype=t.dtype)
            out[k] = r.to(t.device)
        return out

    def _power(self, v: dict, shift: float, tol: float, max_iter: int) -> tuple[float, int, bool, dict]:
        """Power iteration on H + shift I from v; (Rayleigh quotient of H, iterations,
        converged, the last unit vector)."""
        scale = _norm(v)
        v = {k: t / scale for k, t in v.items()}
        previous = None
        for it in range(1, max_iter + 1):
            hv = self.hvp(v)
            if shift:
                hv = {k: hv[k] + shift * v[k] for k in hv}
            value = float(_dot(v, hv))  # v has norm 1: the Rayleigh quotient of H + shift I
            size = float(_norm(hv))
            if not math.isfinite(value) or size == 0.0:
                return value - shift, it, size == 0.0, v
            v = {k: t / size for k, t in hv.items()}
            if previous is not None and abs(value - previous) <= tol * max(abs(value), 1e-12):
                return value - shift, it, True, v
            previous = value
        return value - shift, max_iter, False, v

    def top_eigenvalue(self, seed: int = 0, tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER,
                       start: Optional[dict] = None) -> dict:
        """The largest eigenvalue of H by power iteration from a seeded Gaussian start (or
        from `start`, e.g. the previous measurement's vector: a warm start converges in a
        few iterations when the weights moved little).

        Power iteration finds the eigenvalue of largest magnitude; when that one is negative
        (a saddle's curvature dominating), it runs again on H + |that| I, whose largest
        eigenvalue is the top one of H shifted. Returns {"lambda_max", "iterations",
        "converged", "tol", "max_iter", "seed", "vector" (the last iterate, unit norm)}."""
        if not (tol > 0 and math.isfinite(tol)):
            raise ConfigError(f"tol must be a positive number; got {tol}")
        if max_iter < 1:
            raise ConfigError(f"max_iter must be at least 1; got {max_iter}")
        if start is None or float(_norm(start)) == 0.0:
            start = self._random(torch.Generator().manual_seed(seed), rademacher=False)
        value, iterations, converged, vector = self._power(start, 0.0, tol, max_iter)
        if math.isfinite(value) and value < 0:
            value, more, converged, vector = self._power(start, -value, tol, max_iter)
            iterations += more
        return {"lambda_max": value, "iterations": iterations, "converged": converged, "tol": tol,
                "max_iter": max_iter, "seed": seed, "vector": vector}

    def trace(self, probes: int = 100, seed: int = 0, chunk: int = 10) -> dict:
        """Hutchinson's estimate tr H ~ mean of z^T H z over Rademacher probes z (seeded),
        `chunk` probes per pass over the subset; {"trace", "stderr" (standard error of that
        mean), "probes", "seed"}."""
        if probes < 1:
            raise ConfigError(f"probes must be at least 1; got {probes}")
        if chunk < 1:
            raise ConfigError(f"chunk must be at least 1; got {chunk}")
        generator = torch.Generator().manual_seed(seed)
        values = []
        for start in range(0, probes, chunk):
            k = min(chunk, probes - start)
            zs = [self._random(generator, rademacher=True) for _ in range(k)]
            stacked = {n: torch.stack([z[n] for z in zs]) for n in self.params}
            hz = self.hvp_many(stacked)
            quad = sum((stacked[n] * hz[n]).flatten(1).sum(1) for n in self.params)  # (k,)
            values += quad.double().cpu().tolist()
        t = torch.tensor(values, dtype=torch.float64)
        stderr = float(t.std() / math.sqrt(probes)) if probes > 1 else float("nan")
        return {"trace": float(t.mean()), "stderr": stderr, "probes": probes, "seed": seed}


# --- the optimizer's threshold ------------------------------------------------------------

_SGD_FAMILY = ("gd", "sgd", "momentum", "nesterov")


def stability_threshold(optimizer_name: str, lr: float, momentum: float = 0.0,
                        nesterov: bool = False) -> tuple[Optional[float], str]:
    """(threshold or None, its formula as text) for an optimizer at learning rate `lr`.

    On a quadratic with curvature a, SGD's update is stable iff lr a < 2; heavy-ball
    momentum beta (torch's SGD, dampening 0) iff lr a < 2 + 2 beta; Nesterov iff
    lr a < (2 + 2 beta) / (1 + 2 beta). Adaptive methods precondition the step, so the
    plain threshold does not apply: None and a sentence saying so."""
    from lit_opt import optim

    name = str(optimizer_name).lower()
    if name not in optim.names():
        raise ConfigError(f"unknown optimizer {optimizer_name!r}; choose one of: {', '.join(optim.names())}")
    if name not in _SGD_FAMILY:
        return None, (f"{name}: the plain threshold 2/lr does not apply (its step is "
                      f"{'taken at a perturbed point' if name == 'sam' else 'preconditioned or not a plain gradient step'}; "
                      f"see Cohen et al. 2022 for adaptive methods' preconditioned sharpness)")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive number; got {lr!r}")
    beta = float(momentum or 0.0)
    if not 0.0 <= beta < 1.0:
        raise ConfigError(f"momentum must be in [0, 1); got {momentum!r}")
    if nesterov or name == "nesterov":
        return (2 + 2 * beta) / (lr * (1 + 2 * beta)), f"(2 + 2·{beta:g})/(lr (1 + 2·{beta:g})), Nesterov"
    if beta:
        return (2 + 2 * beta) / lr, f"(2 + 2·{beta:g})/lr, heavy-ball momentum"
    return 2.0 / lr, "2/lr"


def threshold_of(model, lr: Optional[float] = None) -> tuple[Optional[float], str]:
    """stability_threshold for a ClassifierModule's own optimizer (lr: the current one, else
    the configured one)."""
    hp = dict(getattr(model, "optimizer_hparams", {}) or {})
    name = model.hparams.optimizer
    lr = float(hp.get("lr", 0.0) if lr is None else lr)
    return stability_threshold(name, lr, float(hp.get("momentum", 0.0) or 0.0), bool(hp.get("nesterov", False)))
