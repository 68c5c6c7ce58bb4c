"""Layers the fast recipes are built from, each usable in any net (lit_opt/nets.py):

- `Whitening`: a patch-whitening convolution whose filters are computed from training
  images (`init_from_data`, called by the module when a fit starts), weights frozen, bias
  trained for the first `bias_epochs` epochs (`start_epoch`, called every epoch);
- `DiracConv`: a convolution initialised as the identity in its first in-channels;
- `FixedScaleBatchNorm`: BatchNorm whose scale is frozen at 1 (only the shift trains);
- `Scale`: multiplies by a constant (airbench's logit temperature).

They follow airbench94 (KellerJordan/cifar10-airbench, `legacy/airbench94.py`);
benchmarks/anchors/airbench94.py is that recipe as a plain script.
"""

from __future__ import annotations

import torch
from torch import nn


class Whitening(nn.Conv2d):
    """A k x k convolution whose 2 c k^2 filters are the eigenvectors of the covariance of
    the training images' k x k patches, scaled by 1/sqrt(eigenvalue + eps), and their negatives
    (so a following GELU keeps both signs). The filters are frozen; the bias trains for the
    first `bias_epochs` epochs only."""

    def __init__(self, in_channels: int, kernel_size: int = 2, eps: float = 5e-4, bias_epochs: int = 3):
        super().__init__(in_channels, 2 * in_channels * kernel_size ** 2, kernel_size, padding=0, bias=True)
        self.eps, self.bias_epochs = eps, bias_epochs
        self.weight.requires_grad = False
        with torch.no_grad():
            self.bias.zero_()

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the filters from `images` (N, C, H, W), normalized as the net will see them."""
        c, (h, w) = images.shape[1], self.weight.shape[2:]
        patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()
        flat = patches.view(len(patches), -1)
        values, vectors = torch.linalg.eigh(flat.T @ flat / len(flat), UPLO="U")
        values, vectors = values.flip(0).view(-1, 1, 1, 1), vectors.T.reshape(c * h * w, c, h, w).flip(0)
        scaled = vectors / torch.sqrt(values + self.eps)
        self.weight.copy_(torch.cat((scaled, -scaled)).to(self.weight.dtype))

    def start_epoch(self, epoch: int) -> None:
        self.bias.requires_grad = epoch < self.bias_epochs


class DiracConv(nn.Conv2d):
    """Conv 'same', no bias; PyTorch's initialisation, then the identity in the first
    in_channels filters (a block starts close to passing its input through)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(in_channels, out_channels, kernel_size, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            nn.init.dirac_(self.weight[:self.weight.size(1)])


class FixedScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with its scale frozen at 1. `momentum` is torch's (the weight of each
    batch's statistics in the running ones)."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad = False


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


def init_from_data(net: nn.Module, images: torch.Tensor) -> bool:
    """Call every layer's `init_from_data`; True if the net has any."""
    layers = [m for m in net.modules() if hasattr(m, "init_from_data")]
    for layer in layers:
        layer.init_from_data(images)
    return bool(layers)


def start_epoch(net: nn.Module, epoch: int) -> None:
    for m in net.modules():
        if hasattr(m, "start_epoch"):
            m.start_epoch(epoch)
