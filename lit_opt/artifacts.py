"""Files a run leaves behind for people: confusion matrices (CSV + PNG), weight images (PNG).

matplotlib is imported lazily, and figures are drawn on their own Agg canvas (no pyplot):
these run headless, in a worker thread of the desktop app too.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from lit_opt.nets import first_layer


def _figure(figsize):
    """A matplotlib Figure with its own Agg canvas: no pyplot global state, safe in a worker thread."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def write_confusion(confusion: torch.Tensor, class_names: Sequence[str], stem: Path) -> None:
    """`stem`.csv (rows: true class, columns: predicted, plus per-class accuracy) and `stem`.png."""
    cm = confusion.to(torch.int64).cpu()
    totals = cm.sum(dim=1)
    with Path(f"{stem}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *class_names, "accuracy"])
        for i, (name, row, total) in enumerate(zip(class_names, cm.tolist(), totals.tolist())):
            acc = row[i] / total if total else float("nan")
            w.writerow([name, *row, f"{acc:.4f}"])
    if len(class_names) > 30:  # a 100x100 picture with numbers in cells helps nobody
        return
    fig = _figure((1.0 + 0.55 * len(class_names), 0.6 + 0.5 * len(class_names)))
    ax = fig.subplots()
    im = ax.imshow(cm.numpy(), cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max().item() / 2
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j].item()), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > threshold else "black")
    fig.colorbar(im, ax=ax)
    acc = cm.diagonal().sum().item() / max(cm.sum().item(), 1)
    ax.set_title(f"{Path(stem).name}: accuracy {acc:.4f}")
    fig.tight_layout()
    fig.savefig(f"{stem}.png", dpi=100)


def weight_images(layer: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """A layer's weights as a stack of images (K, H, W): one per unit or conv filter.

    Dense layer on images: each unit's weights reshaped to the input's H x W (channels
    averaged); conv layer: each filter's kernel (input channels averaged).
    """
    return weight_tiles(layer.weight.detach().float().cpu(), input_shape)


def weight_tiles(w: torch.Tensor, input_shape: Sequence[int]) -> torch.Tensor:
    """`weight_images` of a weight tensor itself: (out, in) dense or (out, in, kh, kw) conv."""
    if w.dim() == 4:
        return w.mean(dim=1)
    c, h, width = input_shape
    if w.shape[1] != c * h * width:
        side = int(math.ceil(math.sqrt(w.shape[1])))
        padded = torch.zeros(w.shape[0], side * side)
        padded[:, :w.shape[1]] = w
        return padded.view(-1, side, side)
    return w.view(w.shape[0], c, h, width).mean(dim=1)


def mosaic(images: torch.Tensor, pad: int = 1) -> tuple[torch.Tensor, int]:
    """Tile (K, H, W) images into one (rows*(H+pad), cols*(W+pad)) array, NaN between tiles."""
    k, h, w = images.shape
    cols = int(math.ceil(math.sqrt(k)))
    rows = int(math.ceil(k / cols))
    grid = torch.full((rows * (h + pad) - pad, cols * (w + pad) - pad), float("nan"))
    for i in range(k):
        r, c = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = images[i]
    return grid, cols


def write_first_layer(net: nn.Module, input_shape: Sequence[int], path: Path, max_images: int = 100) -> None:
    """A grid of the first layer's weight images, on a symmetric colour map centred at 0.

    One image drawn once (not a subplot per unit: a hundred axes take seconds to render)."""
    images = weight_images(first_layer(net), input_shape)[:max_images]
    grid, cols = mosaic(images)
    limit = images.abs().max().item() or 1.0
    side = min(10.0, 1.0 + 0.9 * cols)
    fig = _figure((side, side * grid.shape[0] / grid.shape[1] + 0.4))
    ax = fig.subplots()
    im = ax.imshow(grid.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(f"first-layer weights, {images.shape[0]} units (red +, blue -)", fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
