"""Muon for the hidden weight matrices, AdamW for everything else, as ONE torch Optimizer.

Muon (Jordan et al. 2024, KellerJordan/Muon `muon.py`) runs momentum SGD and replaces each
2-D update by an approximately orthogonal matrix from five Newton-Schulz iterations:

    m <- lerp(m, g, 1 - momentum)                    (an EMA of the gradient)
    u = lerp(g, m, momentum) if nesterov else m
    O = NS5(u)                                       (quintic 3.4445, -4.7750, 2.0315, in bfloat16)
    w <- w (1 - lr*weight_decay) - lr * sqrt(max(1, rows/cols)) * O

The authors' `MuonWithAuxAdam` trains every other parameter with AdamW inside the same
optimizer; this class does the same with torch's own pieces: `torch.optim.Muon` (torch >= 2.9)
for the Muon part and `torch.optim.AdamW` for the rest. One Optimizer means Lightning's
automatic optimization, LR schedulers (each group keeps its own lr: schedulers scale Muon's
0.02 and AdamW's 3e-4 alike), checkpoints and SAM's base optimizer all see a single object.

Scale: torch.optim.Muon's adjust_lr_fn="original" is KellerJordan's sqrt(max(1, rows/cols))
(rows = fan-out, cols = fan-in of a Linear weight); "match_rms_adamw" (Moonshot's
0.2*sqrt(max(rows, cols))) and "spectral_unclamped" (Bernstein's sqrt(rows/cols)) are other
authors' choices. We pass "original". The only other difference from the authors' code is the
normalization before the iteration: torch divides by max(||u||_F, 1e-7), KellerJordan by
||u||_F + 1e-7, a relative difference of 1e-7/||u||_F per step (tests/test_optim_reference.py:
with torch's normalization the float64 reference agrees within 1e-6 over 50 steps; with the
authors' it is up to 8e-6 away on that test's small net, whose updates have norm about 1e-2).

Defaults are those of the authors' `MuonWithAuxAdam`: Muon lr 0.02, momentum 0.95, Nesterov,
5 Newton-Schulz steps; AdamW lr 3e-4, betas (0.9, 0.95), eps 1e-10; weight decay 0 for both
(their README's example sets 0.01). Weight decay is decoupled in both parts and follows the
param groups (`split_decay` leaves biases and norms undecayed).

Which parameter goes where is decided by `assign` below, and only there.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch.optim import Optimizer

from lit_opt.errors import ConfigError

MUON, ADAMW = "muon", "adamw"


def assign(shapes: Sequence[Sequence[int]]) -> list[tuple[str, str]]:
    """(part, reason) for each parameter shape, given in the order the net registers them.

    Muon takes the hidden 2-D weights; AdamW takes biases and norms (< 2-D), the first and the
    last layer, and conv kernels (torch.optim.Muon accepts only 2-D tensors; KellerJordan's
    code flattens hidden conv kernels to 2-D and would give them Muon, which needs our own
    Muon: not done here, they train with AdamW).

    The factory sees only tensors (lit_opt's module passes `split_decay` groups, no names, no
    layer graph), so "first" and "last" layer come from parameter order: the first and the last
    tensor with 2 or more dimensions, in registration order, are the input layer's and the
    output layer's weights (LeNet-5: conv1 first, the classifier last; the dense layers between
    are hidden). A net that registers its layers out of forward order would be misread.
    """
    weights = [i for i, shape in enumerate(shapes) if len(shape) >= 2]
    first, last = (weights[0], weights[-1]) if weights else (None, None)
    out = []
    for i, shape in enumerate(shapes):
        if len(shape) < 2:
            out.append((ADAMW, "bias or norm (fewer than 2 dimensions)"))
        elif i == first:
            out.append((ADAMW, "first layer" + (" and last layer" if i == last else "")))
        elif i == last:
            out.append((ADAMW, "last layer"))
        elif len(shape) > 2:
            out.append((ADAMW, f"{len(shape)}-D kernel (torch.optim.Muon takes 2-D only)"))
        else:
            out.append((MUON, "hidden 2-D weight"))
    return out


def refuse_without_hidden_matrix(shapes: Sequence[Sequence[int]]) -> list[tuple[str, str]]:
    """`assign(shapes)`, or a ConfigError when no parameter goes to Muon: the net has no hidden
    2-D weight, and muon would silently be plain AdamW. lit_opt's module calls this when it is
    constructed (before any data loads), the optimizer again when it is built."""
    parts = assign(shapes)
    if not any(part == MUON for part, _ in parts):
        weights = [tuple(shape) for shape in shapes if len(shape) >= 2]
        if not weights:
            listing = "no weight matrix at all"
        elif len(weights) == 1:
            listing = f"one weight, {_shape_text(weights[0])}, both first and last layer"
        else:
            listing = f"first layer {_shape_text(weights[0])}, last layer {_shape_text(weights[-1])}"
            if len(weights) > 2:
                listing += f", {len(weights) - 2} conv kernel(s) between"
        raise ConfigError(
            "muon trains the hidden 2-D weight matrices of a net, and this net has none "
            f"({listing}); the first and last layer, biases, norms and conv "
            "kernels go to AdamW, so this would be plain AdamW. Choose a net with hidden "
            "dense layers (mlp with 2+ hidden layers, lenet5) or another optimizer")
    return parts


def describe(named_parameters: Iterable) -> list[tuple[str, tuple[int, ...], str, str]]:
    """(name, shape, part, reason) for each trainable parameter of a module or of
    `module.named_parameters()`: the split `build("muon", ...)` makes, for a run summary."""
    if hasattr(named_parameters, "named_parameters"):
        named_parameters = named_parameters.named_parameters()
    named = [(n, p) for n, p in named_parameters if p.requires_grad]
    parts = assign([tuple(p.shape) for _, p in named])
    return [(n, tuple(p.shape), part, why) for (n, p), (part, why) in zip(named, parts)]


def _shape_text(shape) -> str:
    return "x".join(str(s) for s in shape)


class MuonWithAuxAdamW(Optimizer):
    """torch.optim.Muon on the hidden 2-D weights, torch.optim.AdamW on the rest (see `assign`).

    `params` is a list of tensors or of param-group dicts (as `split_decay` makes); each group
    is split into a Muon group and an AdamW group that keep its other keys (its weight_decay,
    SAM's rho). Muon groups come first. Every group also records all the constructor's
    settings under their schema names (adamw_lr, ...); the live learning rate of a group is
    its "lr" (for AdamW groups adamw_lr at the start), which schedulers change.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, weight_decay: float = 0.0, adamw_lr: float = 3e-4,
                 adamw_betas: tuple[float, float] = (0.9, 0.95), adamw_eps: float = 1e-10):
        settings = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        weight_decay=weight_decay, adamw_lr=adamw_lr,
                        adamw_betas=tuple(adamw_betas), adamw_eps=adamw_eps)
        groups = list(params)
        if not groups:
            raise ValueError("muon: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        groups = [dict(g, params=list(g["params"])) for g in groups]
        tensors = [p for g in groups for p in g["params"]]
        parts = refuse_without_hidden_matrix([tuple(p.shape) for p in tensors])
        part_of = {id(p): part for p, (part, _) in zip(tensors, parts)}

        muon_groups, adamw_groups = [], []
        for g in groups:
            base = {**settings, **g}
            mine = [p for p in g["params"] if part_of[id(p)] == MUON]
            rest = [p for p in g["params"] if part_of[id(p)] == ADAMW]
            if mine:
                muon_groups.append(dict(base, params=mine, use_muon=True))
            if rest:
                adamw_groups.append(dict(base, params=rest, use_muon=False,
                                         lr=base["adamw_lr"], betas=tuple(base["adamw_betas"]),
                                         eps=base["adamw_eps"]))
        # The inner optimizers fill their own keys into these same dicts (torch's add_param_group
        # keeps the dict objects); step() points them at the current groups and state each time,
        # so load_state_dict and SAM (which both replace param_groups and state) stay consistent.
        self._muon = torch.optim.Muon(muon_groups, lr=lr, weight_decay=weight_decay,
                                      momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                                      adjust_lr_fn="original")
        self._adamw = (torch.optim.AdamW(adamw_groups, lr=adamw_lr, betas=tuple(adamw_betas),
                                         eps=adamw_eps, weight_decay=weight_decay)
                       if adamw_groups else None)
        super().__init__(muon_groups + adamw_groups, settings)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._muon.param_groups = [g for g in self.param_groups if g["use_muon"]]
        self._muon.state = self.state
        self._muon.step()
        if self._adamw is not None:
            self._adamw.param_groups = [g for g in self.param_groups if not g["use_muon"]]
            self._adamw.state = self.state
            self._adamw.step()
        return loss
