"""Test-time augmentation: the logits of an image averaged over a few of its views
(`model.tta`, used by validation, test and predict). The levels are airbench94's
(KellerJordan/cifar10-airbench): 0 the image alone; 1 the mean of the image and its mirror;
2 that, averaged 1:1 with the mean of the same for the image shifted one pixel up-left and
one pixel down-right (reflect padding). Level 2 costs 6 forward passes per image."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LEVELS = (0, 1, 2)


def tta_logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, level: int) -> torch.Tensor:
    if level == 0:
        return forward(x)

    def mirror(images: torch.Tensor) -> torch.Tensor:
        return 0.5 * forward(images) + 0.5 * forward(images.flip(-1))

    if level == 1:
        return mirror(x)
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = 0.5 * mirror(padded[..., 0:h, 0:w]) + 0.5 * mirror(padded[..., 2:h + 2, 2:w + 2])
    return 0.5 * mirror(x) + 0.5 * shifted
