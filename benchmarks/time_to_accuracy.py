"""Seconds from the start of a run to a target test accuracy, with the configs in configs/fast/.

    LIT_OPT_DATA=../shared/datasets python benchmarks/time_to_accuracy.py [--repeats 3] [--only mnist_mlp]

After every training epoch the clock pauses, the model is evaluated on the whole official
test set, and the run stops once the target is reached. Reported: training seconds (the
clock, evaluation excluded; it includes data loading, set-up and validation passes) and
the epochs it took. Goals on 2 CPU cores: MLP 98% <= 30 s, CNN 99% <= 90 s,
Fashion-MNIST 90% <= 90 s. Where CUDA is available it also runs cifar10_gpu (CIFAR-10
towards 94%, from the JPEG image-folder copy); `--only cifar10_gpu` runs it anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lit_opt.data import normalize  # noqa: E402
from lit_opt.jobs import prepare_fit  # noqa: E402

TARGETS = {"mnist_mlp": 0.98, "mnist_cnn": 0.99, "fashion_lenet": 0.90}
GPU_TARGETS = {"cifar10_gpu": 0.94}  # run by default only where CUDA is available
CIFAR10_JPEG = "cifar10-jpg.tar.gz"  # the image-folder copy in the datasets folder


class StopAtTestAccuracy(Callback):
    """Evaluate on the test set after each epoch (off the clock); stop at the target."""

    def __init__(self, target: float, test_set, info, start: float):
        self.target, self.test_set, self.info = target, test_set, info
        self.start, self.paused = start, 0.0
        self.reached: tuple[float, int, float] | None = None
        self.history: list[tuple[int, float]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        t0 = time.perf_counter()
        images, labels = self.test_set
        was_training = pl_module.training
        pl_module.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(labels), 2000):
                x = normalize(images[i:i + 2000], self.info["mean"], self.info["std"]).to(pl_module.device)
                correct += (pl_module(x).argmax(1).cpu() == labels[i:i + 2000]).sum().item()
        pl_module.train(was_training)
        acc = correct / len(labels)
        self.history.append((trainer.current_epoch + 1, acc))
        clock = t0 - self.start - self.paused
        if acc >= self.target and self.reached is None:
            self.reached = (clock, trainer.current_epoch + 1, acc)
            trainer.should_stop = True
        self.paused += time.perf_counter() - t0


def one_run(name: str, data_dir: str) -> StopAtTestAccuracy:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        import yaml

        config = yaml.safe_load((ROOT / "configs" / "fast" / f"{name}.yaml").read_text())
        folder = config.get("data", {}).get("name") == "image_folder"
        config.setdefault("data", {})["data_dir"] = str(Path(data_dir) / CIFAR10_JPEG) if folder else data_dir
        config.setdefault("trainer", {}).update(enable_progress_bar=False, enable_model_summary=False)
        config["run"] = {"root": tmp, "test": False}
        job = prepare_fit(config)
        job.datamodule.setup("test")
        stop = StopAtTestAccuracy({**TARGETS, **GPU_TARGETS}[name], job.datamodule.test_set, job.datamodule.info,
                                  start)
        job.trainer.callbacks.append(stop)
        job.trainer.fit(job.model, datamodule=job.datamodule)
    return stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    default = list(TARGETS) + (list(GPU_TARGETS) if torch.cuda.is_available() else [])
    parser.add_argument("--only", nargs="+", default=default, choices=[*TARGETS, *GPU_TARGETS])
    args = parser.parse_args()
    data_dir = os.environ.get("LIT_OPT_DATA") or sys.exit("set LIT_OPT_DATA to the datasets folder")
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    line = []
    for name in args.only:
        runs = [one_run(name, data_dir) for _ in range(args.repeats)]
        reached = [r.reached for r in runs if r.reached]
        curve = ", ".join(f"{e}:{a:.4f}" for e, a in runs[0].history)
        if len(reached) < len(runs):
            print(f"{name:<14} target {({**TARGETS, **GPU_TARGETS})[name]:.2f} NOT reached in {len(runs) - len(reached)} of "
                  f"{len(runs)} runs; first run's test accuracy per epoch: {curve}")
        if reached:
            secs = [r[0] for r in reached]
            print(f"{name:<14} target {({**TARGETS, **GPU_TARGETS})[name]:.2f}: median {statistics.median(secs):6.1f} s "
                  f"(min {min(secs):.1f}, max {max(secs):.1f}), epochs {[r[1] for r in reached]}, "
                  f"accuracy {[round(r[2], 4) for r in reached]}")
            line.append(f"{name} {statistics.median(secs):.1f} s")
        else:
            line.append(f"{name} not reached")
    print("time to accuracy: " + "; ".join(line))


if __name__ == "__main__":
    main()
