"""Training-batch augmentation (`data.augment`, `data.augment_args`): a random translation and
a horizontal flip, drawn from seeds, so that a batch's augmentation depends only on the run's
seed, the epoch and the batch's position (a resumed run sees what it would have seen).

    translate  the largest shift in pixels (4: a random 32x32 crop of the image padded by 4)
    pad_mode   what the shift brings in at the border: "zeros" or "reflect"
    flip       "random": each image flipped with probability 1/2 in every batch;
               "alternate": a random half of the images flipped in even epochs and the other
               half in odd ones (airbench94's scheme: every image is seen both ways in any two
               consecutive epochs); "none"

The default (translate 4, zeros, random) is the CIFAR recipe every earlier run used, drawn
from the same random numbers in the same order, so those runs resume and repeat unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from lit_opt.errors import ConfigError

PAD_MODES = ("zeros", "reflect")
FLIPS = ("random", "alternate", "none")


@dataclass(frozen=True)
class Augmentation:
    translate: int = 4
    pad_mode: str = "zeros"
    flip: str = "random"

    @classmethod
    def from_args(cls, args: Optional[dict]) -> "Augmentation":
        args = dict(args or {})
        unknown = sorted(set(args) - {"translate", "pad_mode", "flip"})
        if unknown:
            raise ConfigError(f"data.augment_args has no option {', '.join(map(repr, unknown))}; "
                              f"its options are: translate, pad_mode, flip")
        made = cls(**args)
        if not isinstance(made.translate, int) or made.translate < 0:
            raise ConfigError(f"data.augment_args.translate must be an integer >= 0, got {made.translate!r}")
        if made.pad_mode not in PAD_MODES:
            raise ConfigError(f"data.augment_args.pad_mode must be one of {', '.join(PAD_MODES)}, got {made.pad_mode!r}")
        if made.flip not in FLIPS:
            raise ConfigError(f"data.augment_args.flip must be one of {', '.join(FLIPS)}, got {made.flip!r}")
        return made

    def flip_bits(self, n: int, seed: int) -> Optional[torch.Tensor]:
        """For "alternate": which images are flipped in even epochs (one draw per run)."""
        if self.flip != "alternate":
            return None
        return torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5

    def apply(self, images: torch.Tensor, generator: torch.Generator, epoch: int,
              flip_bits: Optional[torch.Tensor]) -> torch.Tensor:
        """Augment one batch (N, C, H, W) of any dtype; `flip_bits` are this batch's images'
        (for "alternate")."""
        n, c, h, w = images.shape
        dev = images.device
        out = images
        if self.translate:
            p = self.translate
            oy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(dev) - p
            ox = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(dev) - p
            rows = oy[:, None] + torch.arange(h, device=dev)  # (N, H): source rows
            cols = ox[:, None] + torch.arange(w, device=dev)
            inside = None
            if self.pad_mode == "reflect":
                rows, cols = _reflect(rows, h), _reflect(cols, w)
            else:
                inside = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[:, None, None, :]
                rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
            out = images[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                         rows[:, None, :, None], cols[:, None, None, :]]
            if inside is not None:
                out = torch.where(inside, out, torch.zeros((), dtype=out.dtype, device=dev))
        if self.flip == "random":
            flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
        elif self.flip == "alternate":
            flip = flip_bits.to(dev) ^ bool(epoch % 2)
        else:
            return out
        return torch.where(flip[:, None, None, None], out.flip(-1), out)


def _reflect(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Indices past an edge mirrored back in, the edge pixel not repeated (F.pad's "reflect")."""
    coords = coords.abs()
    return torch.where(coords > size - 1, 2 * (size - 1) - coords, coords)
