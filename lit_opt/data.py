"""One LightningDataModule for every dataset: whole splits in memory, batches by index.

    dm = ClassificationDataModule("mnist", batch_size=100)   # or fashion_mnist, cifar10,
    dm.prepare_data(); dm.setup("fit")                       # cifar100, image_folder
    x, y = next(iter(dm.train_dataloader()))                 # uint8 (100,1,28,28), int64 (100,)

Why not torchvision's DataLoader pipeline: these datasets fit in memory (MNIST is 47 MB),
and per-sample PIL transforms plus worker processes cost more than the small nets
being studied. Batches here are slices of a seeded permutation; normalization runs on
the whole batch after it reaches the device (`on_after_batch_transfer`), and CIFAR's
random crop and flip run on the whole uint8 batch.

The training batcher is stateful: a checkpoint taken mid-epoch records the epoch and
how many batches were served, so a resumed run continues with exactly the batches it
had not yet seen, augmented exactly as they would have been.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterator, Optional

import lightning as L
import torch

from lit_opt.augment import Augmentation
from lit_opt.datasets import (
    ensure_available,
    get_spec,
    image_folder_classes,
    load_split,
    resolve_data_dir,
)
from lit_opt.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor]


def _mix(*numbers: int) -> int:
    """A 63-bit seed from several integers (seed, epoch, batch): distinct inputs, distinct seeds."""
    h = 0
    for n in numbers:
        h = (h * 1_000_003 + int(n) + 1) % (2**63 - 1)
    return h


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (x/255 - mean) / std, per channel.

    Computed as x * scale + shift in place on the float copy: one allocation and two passes
    instead of four; it runs every step (docs/performance.md has the saving).
    """
    scale, shift = _affine(tuple(mean), tuple(std), images.device)
    return images.to(torch.float32, copy=True).mul_(scale).add_(shift)  # never the caller's tensor


@functools.lru_cache(maxsize=16)
def _affine(mean: tuple, std: tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean_t = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return (1.0 / (255.0 * std_t)).float().to(device), (-mean_t / std_t).float().to(device)


class Batches:
    """Batches over in-memory tensors in their stored order (validation, test, predict).

    Under DDP each rank takes a contiguous slice, so across ranks every sample is seen
    exactly once (ranks may then run different numbers of batches: evaluation has no
    per-step collective, and the metrics are reduced once at the end of the epoch).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 rank: int = 0, world_size: int = 1):
        n = len(labels)
        lo, hi = rank * n // world_size, (rank + 1) * n // world_size
        self.images, self.labels, self.batch_size = images[lo:hi], labels[lo:hi], batch_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, len(self.labels), self.batch_size):
            yield self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]


class ShuffledBatches:
    """Training batches: a fresh seeded permutation each epoch, optional augmentation.

    `epoch_fn` says which epoch is running (the Trainer's); without it the batcher counts
    its own passes. All work happens lazily inside the generator, so an `iter()` that is
    never advanced (Lightning probes loaders that way) changes nothing.

    Under DDP every rank draws the same permutation and takes every world_size-th sample
    of it (rank r: perm[r::world_size]), so the shards are disjoint and cover the set; every
    rank runs the same number of batches (each step all-reduces gradients), which can leave
    a rank one empty final batch when the set does not divide evenly. No sample is repeated.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 augment: bool = False, epoch_fn: Optional[Callable[[], int]] = None,
                 rank: int = 0, world_size: int = 1, augmentation: Optional[Augmentation] = None,
                 drop_last: bool = False):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.seed, self.augment, self.epoch_fn = seed, augment, epoch_fn
        self.rank, self.world_size = rank, world_size
        self.augmentation = augmentation or Augmentation()
        self.drop_last = drop_last
        # "alternate" flips: which images are flipped in even epochs, drawn once from the seed.
        self._flip_bits = self.augmentation.flip_bits(len(labels), _mix(seed, -1)) if augment else None
        self.epoch = -1  # the epoch whose permutation is being served
        self.pos = 0  # batches of it served so far
        self._resuming = False
        self.last_indices: Optional[torch.Tensor] = None  # dataset indices of the latest batch

    def __len__(self) -> int:
        per_rank = -(-len(self.labels) // self.world_size)
        if self.drop_last:  # full batches only (every rank's share rounded down alike)
            return len(self.labels) // self.world_size // self.batch_size
        return -(-per_rank // self.batch_size)

    def permutation(self, epoch: int) -> torch.Tensor:
        return torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(_mix(self.seed, epoch)))

    def __iter__(self) -> Iterator[Batch]:
        if self.epoch_fn is not None:
            epoch = self.epoch_fn()
        elif self._resuming and self.pos < len(self):
            epoch = self.epoch
        else:
            epoch = self.epoch + 1
        if not (self._resuming and epoch == self.epoch and self.pos < len(self)):
            self.pos = 0
        self.epoch, self._resuming = epoch, False
        # Indices live where the images do: a set kept on the GPU is gathered there.
        mine = self.permutation(epoch)[self.rank::self.world_size].to(self.images.device)
        while self.pos < len(self):
            idx = mine[self.pos * self.batch_size:(self.pos + 1) * self.batch_size]
            # index_select, not images[idx]: the same rows, gathered about 7x faster on the CPU
            # (advanced indexing takes a general path; docs/performance.md).
            images = self.images.index_select(0, idx)
            if self.augment:
                generator = torch.Generator().manual_seed(_mix(self.seed, epoch, self.pos))
                bits = self._flip_bits.index_select(0, idx.cpu()) if self._flip_bits is not None else None
                images = self.augmentation.apply(images, generator, epoch, bits)
            self.pos += 1
            self.last_indices = idx
            yield images, self.labels.index_select(0, idx)

    # Lightning saves these in the checkpoint (the loader is `_Stateful`) and restores them.
    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.pos = state["seed"], state["epoch"], state["pos"]
        self._resuming = True


class ClassificationDataModule(L.LightningDataModule):
    """MNIST, Fashion-MNIST, CIFAR-10/100 or an image folder, held in memory as uint8 tensors.

    Args:
        name: mnist, fashion_mnist, cifar10, cifar100 (fine labels) or image_folder.
        data_dir: where the files are (an image_folder may be a .tar.gz or .zip); default
            $LIT_OPT_DATA, else ~/.cache/lit_opt/data.
        batch_size: training batch size.
        eval_batch_size: batch size for validation and test (no gradients: larger is faster).
        val_size: images carved off the training set for validation (seeded by split_seed);
            the official test set is used only by `test`. 0: no validation split: training
            uses every training image, and a run has no validation pass and no best.ckpt
            (the fast recipes' setting: their accuracy is the test set's, after training).
        train_size: use only this many training images (after the validation split); None: all.
        test_size: use only the first this many test images; None: all.
        augment: random crop (pad 4) + horizontal flip; None: the dataset's default (on for CIFAR).
        augment_args: how to augment (lit_opt/augment.py): translate (largest shift, 4),
            pad_mode ("zeros" or "reflect"), flip ("random", "alternate" or "none").
        drop_last: train on full batches only, leaving out each epoch's last partial batch.
        split_seed: seed of the train/validation split, fixed so runs share one validation set.
        shuffle_seed: seed of the batch order; None: taken from the global seed (seed_everything).
        download: download missing files through torchvision.
        mean: per-channel normalization mean (of pixel/255); None: the dataset's own.
        std: per-channel normalization std; None: the dataset's own.
        on_device: keep the whole uint8 set on the accelerator, so each batch is gathered
            there by index instead of copied from the host; None: on a CUDA device when the
            set takes under a quarter of its free memory; False: never. Ignored on CPU.
    """

    def __init__(self, name: str = "mnist", data_dir: Optional[str] = None, batch_size: int = 100,
                 eval_batch_size: int = 1000, val_size: int = 5000, train_size: Optional[int] = None,
                 test_size: Optional[int] = None, augment: Optional[bool] = None, split_seed: int = 0,
                 shuffle_seed: Optional[int] = None, download: bool = True,
                 mean: Optional[list[float]] = None, std: Optional[list[float]] = None,
                 on_device: Optional[bool] = None, augment_args: Optional[dict] = None,
                 drop_last: bool = False):
        super().__init__()
        self.spec = get_spec(name)
        self.augmentation = Augmentation.from_args(augment_args)
        self.drop_last = drop_last
        for field, value, low in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1),
                                  ("val_size", val_size, 0), ("train_size", train_size, 1),
                                  ("test_size", test_size, 1)):
            if value is not None and value < low:
                raise ConfigError(f"data.{field} must be an integer >= {low}, got {value}")
        for field, value in (("mean", mean), ("std", std)):
            if value is not None and self.spec.input_shape and len(value) != self.spec.input_shape[0]:
                raise ConfigError(f"data.{field} needs one value per channel "
                                  f"({self.spec.input_shape[0]}), got {value}")
        if std is not None and any(s <= 0 for s in std):
            raise ConfigError(f"data.std values must be > 0, got {std}")
        self.save_hyperparameters()
        self.name = self.spec.name
        self.data_dir = resolve_data_dir(data_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.train_size, self.test_size = val_size, train_size, test_size
        self.augment = self.spec.augment if augment is None else augment
        self.split_seed, self.shuffle_seed, self.download = split_seed, shuffle_seed, download
        self._mean, self._std = mean, std
        self.on_device = on_device
        self._info: Optional[dict] = None
        self.train_set: Optional[Batch] = None
        self._train_batches: Optional[ShuffledBatches] = None  # the loader a run trains from
        self._restored_batches: Optional[dict] = None  # its state from a checkpoint, until it is built
        self.val_set: Optional[Batch] = None
        self.test_set: Optional[Batch] = None

    @property
    def info(self) -> dict:
        """Plain data a model (and its checkpoint) needs to be fed without this module."""
        if self._info is None:
            spec = self.spec
            if spec.torchvision_class is None:  # image folder: read what the files say
                classes = image_folder_classes(self.data_dir)
                images, _, _ = load_split(spec, self.data_dir, train=True)
                shape = tuple(images.shape[1:])
                x = images.float() / 255
                mean = self._mean or x.mean(dim=(0, 2, 3)).tolist()
                std = self._std or x.std(dim=(0, 2, 3)).tolist()
            else:
                classes, shape = list(spec.class_names), spec.input_shape
                mean, std = self._mean or list(spec.mean), self._std or list(spec.std)
            self._info = {"dataset": self.name, "input_shape": [int(s) for s in shape],
                          "num_classes": len(classes), "class_names": list(classes),
                          "mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in std]}
        return self._info

    @property
    def num_classes(self) -> int:
        return self.info["num_classes"]

    def prepare_data(self) -> None:
        ensure_available(self.spec, self.data_dir, self.download)

    def setup(self, stage: str = "fit") -> None:
        if stage in ("fit", "validate") and self.train_set is None:
            images, labels, _ = load_split(self.spec, self.data_dir, train=True)
            if self.val_size >= len(labels):
                raise ConfigError(f"data.val_size ({self.val_size}) must be smaller than the "
                                  f"{len(labels)} training images of {self.name}")
            perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
            val_idx, train_idx = perm[:self.val_size].sort().values, perm[self.val_size:]
            if self.train_size is not None:
                if self.train_size > len(train_idx):
                    raise ConfigError(f"data.train_size ({self.train_size}) is larger than the {len(train_idx)} "
                                      f"training images of {self.name} left after the validation split "
                                      f"(data.val_size {self.val_size}); the largest allowed is {len(train_idx)}")
                train_idx = train_idx[:self.train_size]
            train_idx = train_idx.sort().values
            self.val_set = (images[val_idx], labels[val_idx])
            self.train_set = (images[train_idx], labels[train_idx])
        if stage in ("test", "predict") and self.test_set is None:
            images, labels, _ = load_split(self.spec, self.data_dir, train=False)
            n = len(labels) if self.test_size is None else min(self.test_size, len(labels))
            self.test_set = (images[:n], labels[:n])

    @property
    def num_train_samples(self) -> int:
        assert self.train_set is not None, "call setup('fit') first"
        return len(self.train_set[1])

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _shard(self) -> dict:
        """This process's place among the DDP processes (rank 0 of 1 without a Trainer)."""
        if self.trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": self.trainer.global_rank, "world_size": self.trainer.world_size}

    def _placed(self, split: Batch) -> Batch:
        """The split on the Trainer's device when on_device says so, else as it is."""
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is None or device.type == "cpu" or self.on_device is False or split[0].device == device:
            return split
        if self.on_device is None:
            size = sum(t.numel() * t.element_size() for t in split)
            if device.type != "cuda" or size > torch.cuda.mem_get_info(device)[0] / 4:
                return split
        return split[0].to(device), split[1].to(device)

    def train_dataloader(self) -> ShuffledBatches:
        assert self.train_set is not None, "call setup('fit') first"
        n = len(self.train_set[1])
        if self.batch_size > n:  # it would silently train on one smaller batch per epoch
            raise ConfigError(f"data.batch_size ({self.batch_size}) is larger than the {n} training "
                              f"images; the largest allowed is {n}")
        self.train_set = self._placed(self.train_set)
        # Every rank must draw the same permutation: the seed comes from the config, not the rank.
        seed = self.shuffle_seed if self.shuffle_seed is not None else torch.initial_seed() % 2**31
        epoch_fn = self._current_epoch if self.trainer is not None else None
        size = min(self.train_set[0].shape[-2:])
        if self.augment and self.augmentation.pad_mode == "reflect" and self.augmentation.translate >= size:
            raise ConfigError(f"data.augment_args.translate ({self.augmentation.translate}) with reflect padding "
                              f"must be smaller than the images ({size} pixels); use a smaller shift or zeros")
        batches = ShuffledBatches(*self.train_set, self.batch_size, seed, self.augment, epoch_fn, **self._shard(),
                                  augmentation=self.augmentation, drop_last=self.drop_last)
        if self._restored_batches is not None:  # a resumed run: continue where the checkpoint was
            batches.load_state_dict(self._restored_batches)
            self._restored_batches = None
        self._train_batches = batches
        return batches

    # The training batches' position (seed, epoch, batches served) also travels with the data
    # module's own state. Lightning restores a loader's state only if the loader is built after
    # the checkpoint is read, and a run whose schedule needs its total steps (one-cycle,
    # warmup_linear) builds it earlier, for trainer.estimated_stepping_batches: the resumed epoch
    # then restarted from its first batch (Lightning issue #20550, open in 2.6). The data
    # module's state is restored before that, and handed to the loader when it is built.
    def state_dict(self) -> dict:
        return {"train_batches": self._train_batches.state_dict()} if self._train_batches is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored_batches = state_dict.get("train_batches")

    def val_dataloader(self) -> Batches:
        assert self.val_set is not None, "call setup('fit') first"
        self.val_set = self._placed(self.val_set)
        return Batches(*self.val_set, self.eval_batch_size, **self._shard())

    def test_dataloader(self) -> Batches:
        assert self.test_set is not None, "call setup('test') first"
        self.test_set = self._placed(self.test_set)
        return Batches(*self.test_set, self.eval_batch_size, **self._shard())

    def predict_dataloader(self) -> Batches:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        images, labels = batch
        return normalize(images, self.info["mean"], self.info["std"]), labels
