"""What the per-layer diagnostics cost: the marginal epoch time of `fit` with the layer
diagnostics at their default cadence (weight/update norms and ratios every 25 optimizer
steps, histograms every 250), at every step, and off, alternated in one process on the same
in-memory MNIST subset (the order rotates each round so drift hits each setting alike).

    LIT_OPT_DATA=../shared/datasets python benchmarks/diagnostics_cost.py [--nets mlp lenet5] [--rounds 3]

Prints per net and setting the median marginal epoch time (train/epoch_time of epochs after
the first) and its ratio to "off", and, less sensitive to a busy machine, the seconds spent
inside the diagnostics themselves (the step hooks that copy and measure the weights, the
histograms, and their writers: histograms.jsonl and TensorBoard) as a share of the epoch.
Issue 15's budget: the default cadence within 5% of an epoch. `--threads` (default 1) fixes
torch's thread count: with two threads on a shared 2-core machine, a waiting OpenMP thread
makes epochs 10x slower at random.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

SETTINGS = {"off": (0, 0), "default": (25, 250), "every step": (1, 1)}
SPENT = {"s": 0.0}


def _timed(cls, name: str) -> None:
    original = getattr(cls, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT["s"] += time.perf_counter() - t

    setattr(cls, name, wrapper)


def instrument() -> None:
    from lit_opt.diagnostics.layer_updates import LayerUpdates
    from lit_opt.stream_files import RunFolderWriter
    from lit_opt.tensorboard_files import TensorBoardWriter

    for cls, name in ((LayerUpdates, "_before_step"), (LayerUpdates, "_after_step"),
                      (RunFolderWriter, "_write_histograms"), (TensorBoardWriter, "on_steps")):
        _timed(cls, name)


def epoch_seconds(net: str, every: int, histograms_every: int, data: str, train_size: int) -> tuple[float, float]:
    """(median marginal epoch seconds, share of the training time spent in the diagnostics)."""
    from lit_opt.jobs import prepare_fit

    config = {"seed_everything": 0,
              "trainer": {"max_epochs": 3, "accelerator": "cpu", "enable_progress_bar": False,
                          "enable_model_summary": False},
              "model": {"net": net, **({"net_args": {"hidden": "deep"}} if net == "mlp" else {}),
                        "optimizer": "adam", "lr": 1e-3},
              "data": {"name": "mnist", "data_dir": data, "train_size": train_size, "val_size": 500,
                       "batch_size": 100},
              "diagnostics": {"every": every, "histograms_every": histograms_every},
              "run": {"root": tempfile.mkdtemp(prefix="diag_cost_"), "test": False}}
    job = prepare_fit(config)
    SPENT["s"] = 0.0
    job.run()
    all_times = [row["train/epoch_time"] for row in _epoch_rows(job)]
    return statistics.median(all_times[1:]), SPENT["s"] / sum(all_times)


def _epoch_rows(job) -> list[dict]:
    from lit_opt.run_files import read_epochs

    return [{"train/epoch_time": float(r["train/epoch_time"])} for r in read_epochs(job.run_dir)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=["mlp", "lenet5"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--train_size", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    instrument()
    data = os.environ.get("LIT_OPT_DATA")
    if not data:
        raise SystemExit("set LIT_OPT_DATA to the datasets folder")
    names = list(SETTINGS)
    for net in args.nets:
        got: dict[str, list[float]] = {n: [] for n in names}
        share: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                seconds, spent = epoch_seconds(net, *SETTINGS[name], data, args.train_size)
                got[name].append(seconds)
                share[name].append(spent)
        off = statistics.median(got["off"])
        for name in names:
            med = statistics.median(got[name])
            print(f"{net:7s} {name:11s} epoch {med:6.3f} s  x{med / off:5.3f}  in diagnostics "
                  f"{100 * statistics.median(share[name]):5.2f}% of training  "
                  f"({', '.join(f'{t:.3f}' for t in got[name])})", flush=True)


if __name__ == "__main__":
    main()
