"""The anchor for CIFAR-10: airbench94 by Keller Jordan (KellerJordan/cifar10-airbench,
`legacy/airbench94.py`, the uncompiled variant; MIT licence; 94.01% mean test accuracy in
3.83 s on an A100 in its author's runs), re-typed as a plain PyTorch script. lit_opt's
`configs/anchors/airbench94.yaml` states the same recipe; `benchmarks/anchor_speed.py` times the
two side by side, and tests/test_anchors.py checks that they compute the same losses.

The recipe, as airbench94 runs it:
- net: a 2x2 whitening convolution (2 x 12 filters: the eigenvectors of the covariance of
  2x2 patches of 5,000 training images, each scaled by 1/sqrt(eigenvalue + 5e-4), and their
  negatives; weights frozen, bias trained for the first 3 epochs), GELU, three blocks of
  conv 3x3 -> max-pool 2 -> BatchNorm -> GELU -> conv 3x3 -> BatchNorm -> GELU (widths 64,
  256, 256; convolutions without bias, identity-initialised (Dirac) in their first
  in-channels; BatchNorm eps 1e-12, running-stat momentum 0.4, weight frozen at 1), max-pool
  3, a bias-free dense layer, logits scaled by 1/9;
- Nesterov SGD, momentum 0.85, on the *summed* label-smoothed (0.2) cross-entropy of batches
  of 1,024: lr 11.5 and weight decay 0.0153 "per 1,024 examples", i.e. lr = 11.5 / (1024 (1 +
  1/(1 - 0.85))) and a decay of 0.0153 x 1024 / (1024 (1 + 1/0.15)) per step, BatchNorm biases
  at 64x the lr with their decay per step unchanged; the lr factor rises linearly from 0.2 to
  1 over the first 23% of the steps and falls linearly to 0.07 at the end;
- 9.9 epochs (476 steps: 48 full batches an epoch, the last partial batch dropped) over all
  50,000 training images, shuffled every epoch; augmentation: a random half of the images
  flipped once, then every image flipped on odd epochs, and a random translation of up to 2
  pixels (reflect padding) drawn every epoch;
- lookahead: every 5 steps the weights and BatchNorm statistics move to an exponential
  average of themselves (decay 0.95^5 (step / total)^3), and at the end they are replaced by
  it;
- weights in float16 except BatchNorm (`--dtype float32` for a CPU);
- the score: test accuracy with test-time augmentation: the mean of the logits of the image
  and its mirror, averaged (1:1) with the same for the image shifted one pixel up-left and
  down-right (reflect padding).

What differs from airbench94: the images are the decoded tensors lit_opt itself trains on
(`--data` a CIFAR-10 folder or archive that lit_opt reads: the JPEG copy here), not torchvision's
download; no torch.backends.cudnn.benchmark is set (lit_opt does not set it either); the random
numbers (shuffles, shifts, flips) come from one seeded CPU generator; the lookahead's slow copy
starts from the whitened weights (airbench94 takes it just before setting the whitening filters,
so its first average pulls those frozen filters back by about 1e-6 of the way).

    LIT_OPT_DATA=../shared/datasets python benchmarks/anchors/airbench94.py [--device cuda] [--runs 5]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Recipe:
    epochs: float = 9.9
    batch_size: int = 1024
    lr: float = 11.5  # per 1,024 examples
    momentum: float = 0.85
    weight_decay: float = 0.0153  # per 1,024 examples
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3
    translate: int = 2
    widths: tuple = (64, 256, 256)
    bn_momentum: float = 0.6  # airbench's convention: torch's momentum is 1 - this
    logit_scale: float = 1 / 9
    lookahead_every: int = 5

    def steps(self, n_images: int) -> int:
        return math.ceil(n_images // self.batch_size * self.epochs)


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, channels: int, momentum: float):
        super().__init__(channels, eps=1e-12, momentum=1 - momentum)
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, padding="same", bias: bool = False):
        super().__init__(c_in, c_out, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        torch.nn.init.dirac_(self.weight.data[:self.weight.size(1)])


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__()
        self.conv1, self.pool, self.norm1 = Conv(c_in, c_out), nn.MaxPool2d(2), BatchNorm(c_out, bn_momentum)
        self.conv2, self.norm2, self.activ = Conv(c_out, c_out), BatchNorm(c_out, bn_momentum), nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def make_net(recipe: Recipe = Recipe()) -> nn.Sequential:
    w = recipe.widths
    net = nn.Sequential(
        Conv(3, 24, kernel_size=2, padding=0, bias=True), nn.GELU(),
        Block(24, w[0], recipe.bn_momentum), Block(w[0], w[1], recipe.bn_momentum),
        Block(w[1], w[2], recipe.bn_momentum),
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(w[2], 10, bias=False), Scale(recipe.logit_scale))
    net[0].weight.requires_grad = False
    return net


def whiten_from(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """The whitening filters from the covariance of every 2x2 patch of `images` (normalized)."""
    c, (h, w) = images.shape[1], layer.weight.shape[2:]
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()
    flat = patches.view(len(patches), -1)
    eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / len(flat), UPLO="U")
    eigenvalues, eigenvectors = eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled)).to(layer.weight.dtype)


def normalized(images: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (x/255 - mean) / std, in `dtype`."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return ((images.to(dtype) / 255 - mean.to(dtype)) / std.to(dtype))


def epoch_batches(images, labels, epoch: int, recipe: Recipe, flipped: torch.Tensor, generator: torch.Generator):
    """One epoch's (inputs, labels) batches: the alternating flip, a fresh random translation,
    a fresh shuffle, full batches only."""
    pad = recipe.translate
    x = torch.where(flipped.view(-1, 1, 1, 1) ^ bool(epoch % 2), images.flip(-1), images)
    if pad:
        padded = F.pad(x, (pad,) * 4, mode="reflect")
        shifts = torch.randint(-pad, pad + 1, (len(x), 2), generator=generator).to(x.device)
        out = torch.empty_like(x)
        size = x.shape[-1]
        for sy in range(-pad, pad + 1):
            for sx in range(-pad, pad + 1):
                mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
                out[mask] = padded[mask, :, pad + sy:pad + sy + size, pad + sx:pad + sx + size]
        x = out
    order = torch.randperm(len(x), generator=generator).to(x.device)
    for i in range(len(x) // recipe.batch_size):
        idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
        yield x[idx], labels[idx]


def train(net: nn.Sequential, batches: Callable[[int], object], total_steps: int, recipe: Recipe = Recipe(),
          on_step: Optional[Callable[[int, torch.Tensor], None]] = None) -> None:
    """airbench94's loop. `batches(epoch)` gives an epoch's batches; `on_step(i, loss)` sees
    each step's summed loss (a tensor)."""
    kilostep_scale = 1024 * (1 + 1 / (1 - recipe.momentum))
    lr = recipe.lr / kilostep_scale
    wd = recipe.weight_decay * recipe.batch_size / kilostep_scale
    lr_biases = lr * recipe.bias_scaler
    norm_biases = [p for k, p in net.named_parameters() if "norm" in k and p.requires_grad]
    others = [p for k, p in net.named_parameters() if "norm" not in k and p.requires_grad]
    optimizer = torch.optim.SGD([dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
                                 dict(params=others, lr=lr, weight_decay=wd / lr)],
                                momentum=recipe.momentum, nesterov=True)
    warmup = int(total_steps * 0.23)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.2 + 0.8 * step / warmup
        return 1.0 - 0.93 * (step - warmup) / (total_steps - warmup)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    decays = 0.95 ** 5 * (torch.arange(total_steps + 1) / total_steps) ** 3
    average = {k: v.clone() for k, v in net.state_dict().items()}

    def lookahead(decay: float) -> None:
        for avg, current in zip(average.values(), net.state_dict().values()):
            if current.dtype in (torch.half, torch.float):
                avg.lerp_(current, 1 - decay)
                current.copy_(avg)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing, reduction="none")
    step = 0
    for epoch in range(math.ceil(recipe.epochs)):
        net[0].bias.requires_grad = epoch < recipe.whiten_bias_epochs
        net.train()
        for inputs, labels in batches(epoch):
            loss = loss_fn(net(inputs), labels).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if on_step is not None:
                on_step(step, loss.detach())
            if step % recipe.lookahead_every == 0:
                lookahead(decays[step].item())
            if step >= total_steps:
                lookahead(1.0)
                return


@torch.no_grad()
def tta_logits(net: nn.Module, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    def mirror(x):
        return 0.5 * net(x) + 0.5 * net(x.flip(-1))

    def level2(x):
        padded = F.pad(x, (1,) * 4, mode="reflect")
        size = x.shape[-1]
        shifted = torch.stack([mirror(padded[:, :, 0:size, 0:size]), mirror(padded[:, :, 2:size + 2, 2:size + 2])])
        return 0.5 * mirror(x) + 0.5 * shifted.mean(0)

    net.eval()
    return torch.cat([level2(x) for x in images.split(batch_size)])


def load(data: str, device: torch.device, dtype):
    """lit_opt's decoded CIFAR-10 (train images in its stored order), normalized, on `device`."""
    from lit_opt.data import ClassificationDataModule

    dm = ClassificationDataModule("image_folder", data_dir=data, val_size=0)
    dm.setup("fit")
    dm.setup("test")
    (images, labels), (test_images, test_labels) = dm.train_set, dm.test_set
    return (normalized(images.to(device), dtype).contiguous(memory_format=torch.channels_last), labels.to(device),
            normalized(test_images.to(device), dtype).contiguous(memory_format=torch.channels_last),
            test_labels.to(device))


def timed_run(data, device: torch.device, dtype, seed: int, recipe: Recipe = Recipe()) -> tuple[float, float]:
    """(seconds from the whitening initialisation to the last optimizer step, synchronised;
    test accuracy with test-time augmentation)."""
    images, labels, test_images, test_labels = data
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = make_net(recipe).to(device=device, dtype=dtype, memory_format=torch.channels_last)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.float()
    flipped = (torch.rand(len(images), generator=generator) < 0.5).to(device)
    total = recipe.steps(len(images))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    whiten_from(net[0], images[:5000])
    train(net, lambda e: epoch_batches(images, labels, e, recipe, flipped, generator), total, recipe)
    sync()
    seconds = time.perf_counter() - start
    accuracy = (tta_logits(net, test_images).argmax(1) == test_labels).float().mean().item()
    return seconds, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float16", "float32"), default=None,
                        help="default: float16 on a GPU (as airbench94), float32 on a CPU")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data", default=None, help="default: $LIT_OPT_DATA/cifar10-jpg.tar.gz")
    args = parser.parse_args()
    data = args.data or os.path.join(os.environ.get("LIT_OPT_DATA") or parser.error("set LIT_OPT_DATA or --data"),
                                     "cifar10-jpg.tar.gz")
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("float16" if device.type == "cuda" else "float32"))
    tensors = load(data, device, dtype)
    timed_run(tensors, device, dtype, seed=0)  # warm-up
    results = [timed_run(tensors, device, dtype, seed=1 + r) for r in range(args.runs)]
    for seconds, acc in results:
        print(f"{seconds:.3f} s  test accuracy (TTA) {acc:.4f}")
    print(f"median {statistics.median(s for s, _ in results):.3f} s, mean accuracy "
          f"{statistics.mean(a for _, a in results):.4f} ({args.runs} runs, {device}, {dtype})")


if __name__ == "__main__":
    main()
