"""The nets lit_opt builds, and the options each takes: the schema the CLI's checks, the
app's form and the docs read, importable without torch (the builders are in lit_opt/nets.py).

Every net also takes `dropout` (model.dropout): the probability before each dense layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from lit_opt.optim.hyperparameter import Hyperparameter as H


@dataclass(frozen=True)
class NetSpec:
    name: str
    description: str
    options: tuple[H, ...] = ()  # net_args, besides dropout


NETS: dict[str, NetSpec] = {n.name: n for n in (
    NetSpec("linear", "logistic regression: one dense layer"),
    NetSpec("mlp", "dense layers with ReLU; hidden sizes or a preset",
            (H("hidden", str, "deep", help="hidden layer widths: 'shallow' = [100], 'deep' = [100, 100, 100], "
                                           "or a list such as 256, 128"),)),
    NetSpec("dense784", "784-784-10 with ReLU (seed 002)"),
    NetSpec("lenet5", "conv 6@5x5, pool, conv 16@5x5, pool, fc 120-84 (seed 004)",
            (H("pool", str, "max", choices=("max", "avg"), help="pooling after each conv layer"),
             H("activation", str, "relu", choices=("relu", "tanh"), help="activation function"))),
    NetSpec("fast_cnn", "conv 24@5x5, pool, conv 32@3x3, pool, fc 256 (tuomaso/train_mnist_fast's final net)"),
    NetSpec("cifar_resnet", "a small residual CNN for 32x32 colour images",
            (H("width", int, 32, low=1, help="channels of the first stage (doubling per stage)"),)),
    NetSpec("airbench", "whitening conv, three conv-pool-BN-GELU blocks, dense (airbench94, CIFAR-10)",
            (H("widths", str, "64, 256, 256", help="channels of the three blocks"),
             H("bn_momentum", float, 0.4, low=0.0, high=1.0, low_inclusive=False, high_inclusive=True,
               help="BatchNorm's running-statistics momentum (torch's convention)"),
             H("logit_scale", float, 1 / 9, low=0.0, low_inclusive=False, help="factor on the logits"),
             H("whiten_bias_epochs", int, 3, low=0, help="epochs the whitening layer's bias trains"))),
)}

NET_OPTIONS: dict[str, tuple[H, ...]] = {name: spec.options for name, spec in NETS.items()}
