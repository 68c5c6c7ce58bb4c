"""Helpers the tests pass to the CLI as callbacks, and small-dataset writers."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import Callback


class StopAtStep(Callback):
    """Press the run's Stop button (StopOnRequest) at a global step, or at (epoch, batch)."""

    def __init__(self, step: int = -1, epoch: int = -1, batch: int = -1, rank: int = -1):
        self.step, self.epoch, self.batch, self.rank = step, epoch, batch, rank

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.rank >= 0 and trainer.global_rank != self.rank:  # only this process sees the stop
            return
        # Once only: a resumed run starts past the point.
        if trainer.global_step == self.step or (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            from lit_opt.runs import stop_callback

            stop_callback(trainer).request_stop()


class CrashAtStep(Callback):
    """A crash (not a stop) after the batch that reaches `step`: nothing saves a checkpoint for
    it, as when a process is killed, so the run folder's last.ckpt is the previous epoch's."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError(f"crash at step {self.step}")


def images_for(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """n distinct random uint8 images (N, *shape)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    flat = images.reshape(n, -1)
    flat[:, 0] = np.arange(n) % 256  # with the next pixel, makes every image distinct
    flat[:, 1] = np.arange(n) // 256
    return images


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> list[Path]:
    """MNIST's idx format: big-endian magic 2051 (images) / 2049 (labels) and dimensions."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    img = np.array([2051, n, h, w], dtype=">i4").tobytes() + images.tobytes()
    lab = np.array([2049, n], dtype=">i4").tobytes() + labels.astype(np.uint8).tobytes()
    paths = []
    for name, blob in ((f"{prefix}-images-idx3-ubyte", img), (f"{prefix}-labels-idx1-ubyte", lab)):
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(blob) if gz else blob)
        paths.append(path)
    return paths


def write_cifar(root: Path, kind: str, train: tuple, test: tuple, class_names: list[str]) -> dict[str, str]:
    """CIFAR-10/100 python pickles as torchvision reads them; returns file name -> md5."""
    import hashlib

    folder = root / ("cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "labels" if kind == "cifar10" else "fine_labels"

    def dump(name, images, labels):
        # torchvision expects rows of 3072 bytes: R plane, G plane, B plane.
        blob = {"data": images.reshape(len(images), -1), label_key: [int(v) for v in labels]}
        if kind == "cifar100":
            blob["coarse_labels"] = [0] * len(labels)
        (folder / name).write_bytes(pickle.dumps(blob))

    if kind == "cifar10":
        xs, ys = np.array_split(train[0], 5), np.array_split(train[1], 5)
        for i in range(5):
            dump(f"data_batch_{i + 1}", xs[i], ys[i])
        dump("test_batch", *test)
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": class_names}))
    else:
        dump("train", *train)
        dump("test", *test)
        (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": class_names,
                                                     "coarse_label_names": ["all"]}))
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


class RecordIndices(Callback):
    """Write, per process, the training-set indices of every batch it trained on (one JSON file)."""

    def __init__(self, out_dir: str):
        self.out_dir, self.seen = Path(out_dir), {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        batcher = trainer.train_dataloader
        self.seen.setdefault(str(trainer.current_epoch), []).extend(batcher.last_indices.tolist())

    def on_train_end(self, trainer, pl_module):
        import json

        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


class DumpMetrics(Callback):
    """Write the reduced epoch metrics after validation (rank 0) to a JSON file."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_validation_end(self, trainer, pl_module):
        import json

        if trainer.is_global_zero and not trainer.sanity_checking:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            self.path.write_text(json.dumps(metrics))


class DumpRunOptions(Callback):
    """Write how the model runs (compile backend, channels-last) when a test starts."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_test_start(self, trainer, pl_module):
        import json

        self.path.write_text(json.dumps({"compile": pl_module._compile_backend,
                                         "channels_last": pl_module._channels_last}))


class GradNormsByHand(Callback):
    """Each layer's gradient norm at every optimizer step, computed here in float64 from the
    named parameters (a layer: the module that holds them), independently of lit_opt's stream."""

    def __init__(self):
        self.norms: list[dict[str, float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        import torch

        layers: dict[str, float] = {}
        for name, p in pl_module.net.named_parameters():
            if p.grad is not None:
                module = name.rsplit(".", 1)[0]
                layers[module] = layers.get(module, 0.0) + float(p.grad.double().square().sum())
        self.norms.append({k: v ** 0.5 for k, v in layers.items()})
