"""Which parameters get weight decay: one rule, shared by optimizer groups and the L2 penalty.

The rule is timm's (`param_groups_weight_decay`): biases and normalization
parameters are not decayed. Shrinking a bias or a norm layer's scale toward 0
does not simplify the function the net computes, it only fights the
normalization, so those stay free. A parameter is exempt when `param.ndim <= 1`
(biases, BatchNorm/LayerNorm weights) or its name ends with ".bias". Frozen
parameters (`requires_grad=False`) are skipped altogether, as in timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from torch import Tensor, nn


def is_decayed(name: str, param: "Tensor") -> bool:
    """True if `param` (called `name`) gets weight decay under the timm rule."""
    return not (param.ndim <= 1 or name == "bias" or name.endswith(".bias"))


def _named(named_parameters) -> Iterable[tuple[str, "Tensor"]]:
    # Accept a module as well as module.named_parameters().
    if hasattr(named_parameters, "named_parameters"):
        named_parameters = named_parameters.named_parameters()
    return ((name, p) for name, p in named_parameters if p.requires_grad)


def decay_parameters(named_parameters: "Iterable[tuple[str, Tensor]] | nn.Module",
                     exclude_bias_and_norm: bool = True) -> list["Tensor"]:
    """The parameters that weight decay (or an explicit L2 penalty) applies to."""
    return [p for name, p in _named(named_parameters)
            if not exclude_bias_and_norm or is_decayed(name, p)]


def split_decay(named_parameters: "Iterable[tuple[str, Tensor]] | nn.Module", weight_decay: float,
                exclude_bias_and_norm: bool = True) -> list[dict]:
    """Two param groups for `build()`: decayed weights, and the rest with weight_decay 0.

    Empty groups are dropped, so a net without biases gives one group.
    """
    decay, no_decay = [], []
    for name, p in _named(named_parameters):
        (decay if not exclude_bias_and_norm or is_decayed(name, p) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _norm_layers() -> tuple:
    from torch import nn

    return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm,
            nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.RMSNorm)


def scale_norm_groups(groups: list[dict], net: "nn.Module", scale: float, lr: float) -> list[dict]:
    """`groups` with the parameters of normalization layers moved to groups of their own at
    `lr * scale` and weight decay / `scale`: the same decay per step (lr x decay, for a coupled
    decay such as SGD's), a faster-moving shift (airbench's "bias scaler")."""
    kinds = _norm_layers()
    norm = {id(p) for m in net.modules() if isinstance(m, kinds) for p in m.parameters(recurse=False)}
    out, moved = [], []
    for group in groups:
        rest = [p for p in group["params"] if id(p) not in norm]
        mine = [p for p in group["params"] if id(p) in norm]
        if rest:
            out.append({**group, "params": rest})
        if mine:
            moved.append({**group, "params": mine, "lr": lr * scale,
                          "weight_decay": group.get("weight_decay", 0.0) / scale})
    return out + moved  # the base rate stays group 0's, the one the lr series and the steer row show
