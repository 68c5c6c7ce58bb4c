"""Every layer's activations for one picture: what each layer of the net computes from it.

    from lit_opt import inference
    from lit_opt.activations import activations, classify_with_activations
    model = inference.load("checkpoints/RUN/best.ckpt")
    for layer in activations(model, "seven.png"):       # a path, PIL image, array or Preprocessed
        print(layer.label, layer.values.shape)           # "conv 6@5x5 (after relu)" (6, 28, 28) ...
    probs, pre, layers = classify_with_activations(model, "seven.png")   # one forward pass for both

What a layer is: each Linear or Conv2d (named as the gradient-norm view names it:
`diagnostics.grad_norms.layer_label`, repeats numbered "#2"), together with the
BatchNorm and activation function that directly follow it in the forward pass. Its
activation is the output of the last of those: what the next layer receives, before any
pooling or dropout. So LeNet-5 shows "conv 6@5x5 (after relu)" (6, 28, 28), "conv 16@5x5
(after relu)" (16, 10, 10), "dense 400->120 (after relu)" (120,), "dense 120->84 (after
relu)" (84,), "dense 84->10 (logits)" (10,). A conv layer's values are (channels, H, W),
a dense layer's (units,); the batch axis (one picture) is dropped.

The values are captured by forward hooks on the net's leaf modules during one ordinary
forward pass (eval mode, `torch.inference_mode`), and the hooks are removed afterwards
whatever happens. Operations a net's `forward` applies as functions rather than modules
(`x + body(x)` in a residual block) are not layers of their own; the hooks see the
modules' outputs. No Qt here: gui/widgets/activations.py draws them.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple, Union

import numpy as np
import torch
from torch import nn

from lit_opt.diagnostics.grad_norms import layer_label
from lit_opt.preprocess import ImageLike, Preprocessed

# Modules that extend the layer before them (its output is theirs): normalization and the
# nonlinearities nets use. Pooling, dropout and flattening end a layer.
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
NONLINEARITIES = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
                  nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.ReLU6, nn.PReLU)
PARAMETRIC = (nn.Linear, nn.Conv2d)


class Layer(NamedTuple):
    """One layer's activations for one picture."""

    label: str  # "conv 6@5x5 (after relu)", "dense 84->10 (logits)"
    values: np.ndarray  # float32, (C, H, W) for a conv layer, (units,) for a dense one
    module: str  # the Linear/Conv2d's qualified name in the net ("features.0")

    @property
    def is_conv(self) -> bool:
        return self.values.ndim == 3


def _net(model) -> nn.Module:
    """The plain net of a ClassifierModule (or the module itself)."""
    return getattr(model, "net", model)


def _leaves(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in net.named_modules() if not list(m.children())]


def _suffix(module: nn.Module) -> str:
    """"relu", "tanh", "batchnorm" (its 1d/2d is the shape's business, shown beside)."""
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batchnorm"
    return type(module).__name__.lower()


def group(calls: list[tuple[str, nn.Module, torch.Tensor]]) -> list[Layer]:
    """Leaf-module calls in forward order -> layers: each Linear/Conv2d, extended by the
    norms and nonlinearities right after it (see the module doc)."""
    layers: list[Layer] = []
    seen: dict[str, int] = {}
    current = None  # [name, base label, what followed, output]
    for name, module, out in calls:
        if isinstance(module, PARAMETRIC):
            if current is not None:
                layers.append(_layer(current))
            base = layer_label(module)
            seen[base] = seen.get(base, 0) + 1
            label = base if seen[base] == 1 else f"{base} #{seen[base]}"
            current = [name, label, [], out]
        elif (current is not None and isinstance(module, NORMS + NONLINEARITIES)
              and out.shape == current[3].shape):
            current[2].append(_suffix(module))
            current[3] = out
        elif current is not None:
            layers.append(_layer(current))
            current = None
    if current is not None:
        layers.append(_layer(current, last=True))
    return layers


def _layer(current, last: bool = False) -> Layer:
    name, label, after, out = current
    if after:
        label = f"{label} (after {', '.join(after)})"
    elif last:
        label = f"{label} (logits)"  # the last layer with nothing after it: the scores softmax reads
    values = out.detach().float().cpu().numpy()[0].copy()
    return Layer(label=label, values=values, module=name)


@contextlib.contextmanager
def recording(model) -> Iterator[list[Layer]]:
    """Within the block, forward passes of `model` are recorded; on leaving it the yielded
    list holds the layers of the last pass (hooks removed whatever happens)."""
    net = _net(model)
    calls: list[tuple[str, nn.Module, torch.Tensor]] = []
    layers: list[Layer] = []
    handles = [net.register_forward_pre_hook(lambda module, inputs: calls.clear())]  # a new pass

    def hook_for(name: str):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                # A clone: an in-place op later in the pass (ReLU(inplace=True) on a residual
                # branch) must not change what was recorded.
                calls.append((name, module, output.detach().clone()))
        return hook

    try:
        for name, module in _leaves(net):
            handles.append(module.register_forward_hook(hook_for(name)))
        yield layers
        layers.extend(group(calls))
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _evaluating(model) -> Iterator[None]:
    """Eval mode (dropout off, BatchNorm's running statistics) for the block, then as before."""
    net = _net(model)
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        net.train(was_training)


def classify_with_activations(model, image: Union[ImageLike, Preprocessed]
                              ) -> tuple[dict[str, float], Preprocessed, list[Layer]]:
    """`inference.probabilities` (probabilities most probable first, the preprocessed
    picture) and every layer's activations, from one forward pass. EmptyImageError for a
    blank picture, ImageError for one that cannot be read."""
    from lit_opt.inference import preprocess, probabilities

    pre = image if isinstance(image, Preprocessed) else preprocess(image, model)
    with _evaluating(model), recording(model) as layers:
        probs, pre = probabilities(model, pre)
    return probs, pre, layers


def activations(model, image: Union[ImageLike, Preprocessed]) -> list[Layer]:
    """Every layer's activations for one picture (see the module doc)."""
    return classify_with_activations(model, image)[2]
