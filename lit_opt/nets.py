"""Plain nn.Modules built by name: `build(name, input_shape, num_classes, **options)`.

    net = build("mlp", (1, 28, 28), 10, hidden="deep", dropout=0.25)

The nets and their options are declared in lit_opt/declarations/nets.py. Every net takes any (C, H, W) input and class count. Dropout with probability p sits
before each dense layer. They know nothing of Lightning: the LightningModule wraps them.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from lit_opt.declarations.nets import NET_OPTIONS
from lit_opt.declarations.nets import NETS as DECLARED
from lit_opt.errors import ConfigError
from lit_opt.layers import DiracConv, FixedScaleBatchNorm, Scale, Whitening

MLP_PRESETS = {"shallow": [100], "deep": [100, 100, 100]}  # seed 003's nets


def _dense_stack(sizes: Sequence[int], dropout: float, activation: type[nn.Module] = nn.ReLU) -> list[nn.Module]:
    """Dropout -> Linear -> activation for each layer, with no activation after the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return layers


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def linear(input_shape, num_classes, dropout: float = 0.0) -> nn.Module:
    """Logistic regression (softmax regression over the flattened pixels)."""
    return nn.Sequential(nn.Flatten(), *_dense_stack([_numel(input_shape), num_classes], dropout))


def mlp(input_shape, num_classes, hidden: Union[str, Sequence[int]] = "deep", dropout: float = 0.0) -> nn.Module:
    """Multi-layer perceptron; `hidden` is a list of layer widths or 'shallow' / 'deep'."""
    if isinstance(hidden, str):
        if hidden not in MLP_PRESETS:
            raise ConfigError(f"unknown mlp preset {hidden!r}; choose one of: "
                              f"{', '.join(MLP_PRESETS)}, or give a list of widths like [100, 100]")
        hidden = MLP_PRESETS[hidden]
    hidden = list(hidden)
    if not hidden or any(int(h) != h or h < 1 for h in hidden):
        raise ConfigError(f"model.net_args.hidden must be a non-empty list of integers >= 1, got {hidden}")
    return nn.Sequential(nn.Flatten(), *_dense_stack([_numel(input_shape), *hidden, num_classes], dropout))


def dense784(input_shape, num_classes, dropout: float = 0.0) -> nn.Module:
    """One hidden layer as wide as an MNIST image (784-784-10), as in seed 002."""
    return mlp(input_shape, num_classes, hidden=[784], dropout=dropout)


class LeNet5(nn.Module):
    """LeCun et al. 1998, as in seed 004: conv 6@5x5 (padded to keep 28x28), pool,
    conv 16@5x5, pool, dense 120, 84, classes."""

    def __init__(self, input_shape, num_classes, pool: str = "max", activation: str = "relu",
                 dropout: float = 0.0):
        super().__init__()
        pools = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if pool not in pools:
            raise ConfigError(f"unknown lenet5 pool {pool!r}; choose one of: {', '.join(pools)}")
        if activation not in acts:
            raise ConfigError(f"unknown lenet5 activation {activation!r}; choose one of: {', '.join(acts)}")
        act, pool_cls = acts[activation], pools[pool]
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 6, 5, padding=2), act(), pool_cls(2),
            nn.Conv2d(6, 16, 5), act(), pool_cls(2), nn.Flatten())
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, *input_shape)).shape[1]
        self.classifier = nn.Sequential(*_dense_stack([n_flat, 120, 84, num_classes], dropout, act))

    def forward(self, x):
        return self.classifier(self.features(x))


class FastCNN(nn.Module):
    """The final net of tuomaso/train_mnist_fast (notebook 8_Final_00s76): conv 24@5x5,
    max-pool, ReLU, conv 32@3x3, max-pool, ReLU, dense 256, classes; pooling before the
    activation, no padding, as there."""

    def __init__(self, input_shape, num_classes, dropout: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 24, 5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(24, 32, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, *input_shape)).shape[1]
        self.classifier = nn.Sequential(*_dense_stack([n_flat, 256, num_classes], dropout))

    def forward(self, x):
        return self.classifier(self.features(x))


class _AirbenchBlock(nn.Module):
    """conv 3x3 -> max-pool 2 -> BatchNorm -> GELU -> conv 3x3 -> BatchNorm -> GELU."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__()
        self.conv1, self.pool = DiracConv(c_in, c_out), nn.MaxPool2d(2)
        self.norm1 = FixedScaleBatchNorm(c_out, momentum=bn_momentum, eps=1e-12)
        self.conv2 = DiracConv(c_out, c_out)
        self.norm2 = FixedScaleBatchNorm(c_out, momentum=bn_momentum, eps=1e-12)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


def airbench(input_shape, num_classes, widths: Union[str, Sequence[int]] = "64, 256, 256",
             bn_momentum: float = 0.4, logit_scale: float = 1 / 9, whiten_bias_epochs: int = 3,
             dropout: float = 0.0) -> nn.Module:
    """airbench94's net (KellerJordan/cifar10-airbench): a 2x2 whitening convolution set from
    the training images (lit_opt/layers.py), GELU, three blocks (`_AirbenchBlock`), max-pool 3,
    a bias-free dense layer, logits scaled by `logit_scale`. Layer names match the anchor
    script's (benchmarks/anchors/airbench94.py), so their weights load into each other."""
    widths = _int_list(widths, "widths")
    if len(widths) != 3:
        raise ConfigError(f"model.net_args.widths: airbench has three blocks, got {widths}")
    if not 0.0 < bn_momentum <= 1.0:
        raise ConfigError(f"model.net_args.bn_momentum must be in (0, 1], got {bn_momentum}")
    whitening = Whitening(input_shape[0], kernel_size=2, bias_epochs=whiten_bias_epochs)
    net = nn.Sequential(
        whitening, nn.GELU(),
        _AirbenchBlock(whitening.out_channels, widths[0], bn_momentum),
        _AirbenchBlock(widths[0], widths[1], bn_momentum),
        _AirbenchBlock(widths[1], widths[2], bn_momentum), nn.MaxPool2d(3), nn.Flatten(),
        *([nn.Dropout(dropout)] if dropout > 0 else []), nn.Linear(widths[2], num_classes, bias=False),
        Scale(logit_scale))
    try:  # three pools of 2 and one of 3 must leave one pixel (32x32 and 28x28 do)
        with torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape))
    except RuntimeError:
        raise ConfigError(f"airbench is made for 32x32 images (three pools of 2 and one of 3 leave one "
                          f"pixel); it cannot take {tuple(input_shape)}") from None
    return net.train()


def _int_list(value: Union[str, Sequence[int]], name: str) -> list[int]:
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.replace(",", " ").split()]
        except ValueError:
            raise ConfigError(f"model.net_args.{name} must be a list of integers, got {value!r}") from None
    value = list(value)
    if not value or any(int(v) != v or v < 1 for v in value):
        raise ConfigError(f"model.net_args.{name} must be a list of integers >= 1, got {value}")
    return [int(v) for v in value]


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x):
        return x + self.body(x)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class CifarResNet(nn.Module):
    """A small residual CNN in the style of the fast CIFAR-10 baselines (ResNet-9 family):
    prep conv, three stages of conv-BN-ReLU + max-pool, residual blocks after stages 1 and 3,
    global max-pool, dense classifier. width=64 gives 64-128-256-512 channels."""

    def __init__(self, input_shape, num_classes, width: int = 32, dropout: float = 0.0):
        super().__init__()
        if width < 1:
            raise ConfigError(f"cifar_resnet width must be >= 1, got {width}")
        w = width
        self.features = nn.Sequential(
            _conv_bn(input_shape[0], w),
            _conv_bn(w, 2 * w), nn.MaxPool2d(2), _Residual(2 * w),
            _conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
            _conv_bn(4 * w, 8 * w), nn.MaxPool2d(2), _Residual(8 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(*_dense_stack([8 * w, num_classes], dropout))

    def forward(self, x):
        return self.classifier(self.features(x))


# The builders, one per net declared in lit_opt/declarations/nets.py (a test keeps them in step).
NETS = {"linear": linear, "mlp": mlp, "dense784": dense784, "lenet5": LeNet5, "fast_cnn": FastCNN,
        "cifar_resnet": CifarResNet, "airbench": airbench}


def options(name: str) -> dict[str, object]:
    """The options a net accepts, with their defaults (lit_opt/declarations/nets.py, and dropout)."""
    return {**{h.name: h.default for h in NET_OPTIONS[_key(name)]}, "dropout": 0.0}


def _key(name: str) -> str:
    key = name.lower()
    if key not in DECLARED:
        raise ConfigError(f"unknown net {name!r}; choose one of: {', '.join(DECLARED)}")
    return key


def build(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    """Build a net by name; unknown options and out-of-range values raise ConfigError."""
    key = _key(name)
    allowed = options(key)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(f"net {key!r} has no option {', '.join(map(repr, unknown))}; "
                          f"its options are: {', '.join(allowed) or 'none'}")
    p = kwargs.get("dropout", 0.0)
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {p}")
    if len(input_shape) != 3 or num_classes < 2:
        raise ConfigError(f"nets need an input shape (C, H, W) and >= 2 classes, got {input_shape}, {num_classes}")
    return NETS[key](tuple(int(s) for s in input_shape), int(num_classes), **kwargs)


def first_layer(net: nn.Module) -> nn.Module:
    """The first Linear or Conv2d layer: the one whose weights look like image templates."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            return module
    raise ValueError("net has no Linear or Conv2d layer")


def weight_layers(net: nn.Module) -> dict[str, nn.Module]:
    """Every Linear and Conv2d layer by its qualified name, in forward order (for weight views)."""
    return {name: m for name, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
