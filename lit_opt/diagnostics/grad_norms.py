"""Per-layer gradient norms after every optimizer step, from the norms the divergence guard
computes anyway (one per parameter tensor): no extra pass over the gradients. A layer is a
module that holds parameters itself (its weight and bias: the norm of both together).

The guard's per-tensor norms stay on the device; when the stream flushes, the rows' norms are
combined into layers together (one matrix product), so this adds no synchronisation. For gd
there is one value per epoch (its one step); for SAM, the gradient at the perturbed point,
the one its step uses.
"""

from __future__ import annotations

import torch
from torch import nn

from lit_opt.stream import Series, Source


def layer_label(module: nn.Module) -> str:
    """What a layer is, for people: "dense 784->100", "conv 6@5x5", "batchnorm 16"."""
    if isinstance(module, nn.Linear):
        return f"dense {module.in_features}->{module.out_features}"
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size
        return f"conv {module.out_channels}@{k[0]}x{k[1]}"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return f"batchnorm {module.num_features}"
    return type(module).__name__.lower()


def parameter_layers(net: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """(label, its parameters) for every module that holds trainable parameters itself, in
    forward order; labels made unique by numbering repeats ("dense 100->100 #2")."""
    layers, seen = [], {}
    for _, module in net.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not params:
            continue
        label = layer_label(module)
        seen[label] = seen.get(label, 0) + 1
        layers.append((label if seen[label] == 1 else f"{label} #{seen[label]}", params))
    return layers


class GradNorms(Source):
    series = (Series("train/grad_norm", kind="vector", label="gradient norm per layer"),)

    def __init__(self) -> None:
        self._guard = None
        self._labels: list[str] = []
        self._layer_of: dict[int, int] = {}
        self._order: tuple = ()  # the guard's order of tensors, and its tensors x layers matrix
        self._matrix = torch.zeros(0, 0)

    def start(self, trainer, pl_module) -> dict:
        from lit_opt.callbacks import DivergenceGuard

        self._guard = next((cb for cb in trainer.callbacks if isinstance(cb, DivergenceGuard)), None)
        layers = parameter_layers(pl_module.net)
        self._labels = [label for label, _ in layers]
        self._layer_of = {id(p): i for i, (_, params) in enumerate(layers) for p in params}
        self._order = ()
        return {"train/grad_norm": list(self._labels)} if self._guard is not None else None

    def _layers_matrix(self, params) -> torch.Tensor:
        m = torch.zeros(len(params), len(self._labels))
        for i, p in enumerate(params):
            if id(p) in self._layer_of:
                m[i, self._layer_of[id(p)]] = 1.0
        return m

    def step(self, trainer, pl_module) -> dict:
        got = self._guard.take_norms() if self._guard is not None else None
        if got is None:  # no optimizer step in this batch (gd before its epoch's end)
            return {}
        params, norms = got
        order = tuple(id(p) for p in params)
        if not self._order:
            self._order, self._matrix = order, self._layers_matrix(params)
        if order != self._order:  # a tensor gained or lost its gradient: combine this one now
            m = self._layers_matrix(params).to(norms.device)
            return {"train/grad_norm": (norms.float().square() @ m).sqrt().tolist()}
        return {"train/grad_norm": norms}  # per tensor, on the device; combined in to_host

    def to_host(self, name: str, values: torch.Tensor) -> list:
        return (values.square() @ self._matrix).sqrt().tolist()
