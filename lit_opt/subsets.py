"""Fixed, seeded subsets of a checkpoint's training and test sets, ready for its net.

    x, y, about = training_subset(ckpt, samples=2000, seed=0)   # normalized float, int64, a description

The training split is the run's own: the same dataset, validation size, training size and
split seed that the checkpoint's data module recorded, so a subset never contains a
validation image. The subset is `samples` images drawn without replacement by a
`torch.Generator` seeded with `seed` (sorted, so a subset is a set, not an order), and
`about` names it ({"split", "samples", "of", "seed", "dataset"}) for every output that uses it.

Used by `sharpness` (lit_opt/hessian.py) and `landscape` (lit_opt/landscape.py). The data
module's recorded settings are plain data (checked by lit_opt.inference); its `data_dir`
is used only when that folder exists here, else LIT_OPT_DATA (or `data_dir` given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from lit_opt.errors import ConfigError

# The data module settings that decide which images are the training split; others (batch
# size, augmentation, downloads) do not change what an image is.
_SPLIT_KEYS = ("name", "val_size", "train_size", "split_seed", "mean", "std")


def datamodule_of(ckpt: dict, data_dir: Optional[str] = None):
    """The checkpoint's ClassificationDataModule (not set up), from its recorded settings."""
    from lit_opt.data import ClassificationDataModule

    recorded = ckpt.get("datamodule_hyper_parameters") or {}
    if not isinstance(recorded, dict):
        recorded = {}
    info = (ckpt.get("hyper_parameters") or {}).get("data_info") or {}
    kwargs = {k: recorded[k] for k in _SPLIT_KEYS if recorded.get(k) is not None}
    kwargs.setdefault("name", info.get("dataset", "mnist"))
    if data_dir is None and recorded.get("data_dir") and Path(str(recorded["data_dir"])).is_dir():
        data_dir = str(recorded["data_dir"])
    return ClassificationDataModule(data_dir=data_dir, download=False, **kwargs)


def check_samples(samples: int, option: str = "--samples") -> None:
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ConfigError(f"{option} must be a whole number of images, at least 1; got {samples!r}")


def _draw(images: torch.Tensor, labels: torch.Tensor, samples: int, seed: int, option: str, split: str):
    n = len(labels)
    if samples > n:
        raise ConfigError(f"{option} ({samples}) is larger than the {n} images of the run's {split}; "
                          f"the largest allowed is {n}")
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:samples].sort().values
    return images[idx], labels[idx], n


def normalized(images: torch.Tensor, data_info: dict) -> torch.Tensor:
    """uint8 images -> the float input the net was trained on (the data module's normalization)."""
    from lit_opt.data import normalize

    return normalize(images, data_info["mean"], data_info["std"])


def training_subset(ckpt: dict, samples: int, seed: int = 0, data_dir: Optional[str] = None,
                    option: str = "--samples"):
    """(x, y, about): `samples` seeded images of the run's training split, normalized."""
    return _subset(ckpt, "train", samples, seed, data_dir, option)


def test_subset(ckpt: dict, samples: int, seed: int = 0, data_dir: Optional[str] = None,
                option: str = "--test_samples"):
    """(x, y, about): `samples` seeded images of the official test set, normalized."""
    return _subset(ckpt, "test", samples, seed, data_dir, option)


def _subset(ckpt: dict, split: str, samples: int, seed: int, data_dir: Optional[str], option: str):
    check_samples(samples, option)
    dm = datamodule_of(ckpt, data_dir)
    dm.prepare_data()
    dm.setup("fit" if split == "train" else "test")
    pair, what = (dm.train_set, "training split") if split == "train" else (dm.test_set, "test set")
    images, labels, n = _draw(*pair, samples, seed, option, what)
    info = ckpt["hyper_parameters"]["data_info"]
    return normalized(images, info), labels, {"split": split, "dataset": dm.name, "samples": samples,
                                               "of": n, "seed": seed}


def describe(about: dict) -> str:
    """"2000 of the 55000 training images of mnist (seed 0)"."""
    split = "training" if about["split"] == "train" else "test"
    return f"{about['samples']} of the {about['of']} {split} images of {about['dataset']} (seed {about['seed']})"
