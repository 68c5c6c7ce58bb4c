"""Same recipe, same speed: each anchor script (benchmarks/anchors/) against the lit_opt config
that states its recipe (configs/anchors/), on one device, in one process, timed the same way.

    LIT_OPT_DATA=../shared/datasets python benchmarks/anchor_speed.py [--device cuda] [--rounds 5]

Both sides are timed from just before the first training batch to just after the last
optimizer step, the device synchronised at both ends; data loading and moving, start-up,
the test pass and checkpoint writes (after the last step) are outside the clock. One warm-up
run of each comes first (kernels chosen and loaded), then `--rounds` rounds alternate the two.
The goal: the lit_opt config reaches its anchor's test accuracy within 1.5x the anchor's time.

Anchors (`--only`): `mnist` (tuomaso/train_mnist_fast's final recipe against
configs/anchors/mnist_fast.yaml) and `cifar10` (airbench94 against configs/anchors/airbench94.yaml,
both on the CIFAR-10 JPEG copy, `$LIT_OPT_DATA/cifar10-jpg.tar.gz`, decoded once by lit_opt; the
anchor in float16 on a GPU as airbench runs it, lit_opt in bf16-mixed as its config says).
`--train-size N` trains both on the first N images only, `--test-size N` scores both on the
first N test images, `--epochs E` shortens airbench's 9.9 (quick checks of this script on a CPU).
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
import yaml
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class FirstToLastStep(Callback):
    """Seconds from the first training batch's start to the last batch's end (after its
    optimizer step), synchronised with the device at both ends."""

    def __init__(self):
        self.start = self.seconds = None

    def _sync(self, trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.start is None:
            self._sync(trainer)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= trainer.estimated_stepping_batches:  # the last step is done
            self._sync(trainer)
            self.seconds = time.perf_counter() - self.start


def lit_opt_run(config_path: Path, data_dir: str, device: str, seed: int, train_size, test_size=None,
                **trainer) -> tuple[float, float]:
    from lit_opt.jobs import prepare_fit

    config = yaml.safe_load(config_path.read_text())
    config["seed_everything"] = seed
    config["data"].update(data_dir=data_dir, **({"train_size": train_size} if train_size else {}),
                          **({"test_size": test_size} if test_size else {}))
    config["trainer"].update(trainer)
    config["trainer"].update(accelerator=device, devices=1, enable_progress_bar=False, enable_model_summary=False)
    with tempfile.TemporaryDirectory() as root:
        config["run"] = {"root": root}
        job = prepare_fit(config)
        clock = FirstToLastStep()
        job.trainer.callbacks.append(clock)
        summary = job.run()
    return clock.seconds, summary["test/acc"]


def mnist(args, data_dir: str) -> dict[str, list]:
    from benchmarks.anchors import train_mnist_fast as anchor
    device = torch.device(args.device)
    images, labels, test_images, test_labels = anchor.load(data_dir, device, seed=0)
    if args.train_size:
        images, labels = images[:args.train_size], labels[:args.train_size]
    if args.test_size:
        test_images, test_labels = test_images[:args.test_size], test_labels[:args.test_size]
    data = (images, labels, test_images, test_labels)
    config = ROOT / "configs" / "anchors" / "mnist_fast.yaml"
    anchor.timed_run(data, device, seed=0)  # warm-ups
    lit_opt_run(config, data_dir, args.device, 0, args.train_size, args.test_size)
    return _alternate(args.rounds, {
        "anchor": lambda r: anchor.timed_run(data, device, seed=1 + r),
        "lit_opt": lambda r: lit_opt_run(config, data_dir, args.device, 1 + r, args.train_size, args.test_size)})


def _alternate(rounds: int, runs: dict) -> dict[str, list]:
    """`rounds` rounds of the named runs, the order swapped every round."""
    times = {name: [] for name in runs}
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for name in order:
            times[name].append(runs[name](r))
            print(f"  round {r + 1} {name:<8} {times[name][-1][0]:.3f} s  test accuracy {times[name][-1][1]:.4f}",
                  flush=True)
    return times


def cifar10(args, data_dir: str) -> dict[str, list]:
    from benchmarks.anchors import airbench94 as anchor
    device = torch.device(args.device)
    archive = os.path.join(data_dir, "cifar10-jpg.tar.gz")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    images, labels, test_images, test_labels = anchor.load(archive, device, dtype)
    if args.train_size:
        images, labels = images[:args.train_size], labels[:args.train_size]
    if args.test_size:
        test_images, test_labels = test_images[:args.test_size], test_labels[:args.test_size]
    data = (images, labels, test_images, test_labels)
    recipe = anchor.Recipe(epochs=args.epochs) if args.epochs else anchor.Recipe()
    steps = recipe.steps(len(labels))
    config = ROOT / "configs" / "anchors" / "airbench94.yaml"
    trainer = {"max_steps": steps, "max_epochs": -(-steps // (len(labels) // recipe.batch_size))}
    if device.type != "cuda":
        trainer["precision"] = "32-true"  # bf16 autocast on a CPU is slow and not what a CPU run uses
    anchor.timed_run(data, device, dtype, seed=0, recipe=recipe)  # warm-ups
    lit_opt_run(config, archive, args.device, 0, args.train_size, args.test_size, **trainer)
    return _alternate(args.rounds, {
        "anchor": lambda r: anchor.timed_run(data, device, dtype, seed=1 + r, recipe=recipe),
        "lit_opt": lambda r: lit_opt_run(config, archive, args.device, 1 + r, args.train_size, args.test_size,
                                         **trainer)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=None, help="airbench's epochs (default its 9.9)")
    parser.add_argument("--only", nargs="+", choices=("mnist", "cifar10"), default=["mnist", "cifar10"])
    args = parser.parse_args()
    data_dir = os.environ.get("LIT_OPT_DATA") or parser.error("set LIT_OPT_DATA to the datasets folder")
    warnings.filterwarnings("ignore")
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {name}")
    results = {}
    for name, run in (("mnist", mnist), ("cifar10", cifar10)):
        if name in args.only:
            print(f"{name}: the anchor script against configs/anchors/ (lit_opt)", flush=True)
            results[name] = run(args, data_dir)
    for name, times in results.items():
        med = {k: statistics.median(s for s, _ in v) for k, v in times.items()}
        acc = {k: statistics.mean(a for _, a in v) for k, v in times.items()}
        print(f"{name:<8} anchor {med['anchor']:.3f} s ({acc['anchor']:.4f}), lit_opt {med['lit_opt']:.3f} s "
              f"({acc['lit_opt']:.4f}): lit_opt/anchor {med['lit_opt'] / med['anchor']:.2f} (goal <= 1.5, "
              f"same accuracy)")


if __name__ == "__main__":
    main()
