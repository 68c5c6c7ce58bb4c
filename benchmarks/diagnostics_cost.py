"""What the per-layer diagnostics cost: the marginal epoch time of `fit` with the layer
diagnostics at their default cadence (weight/update norms and ratios every 10 optimizer
steps, histograms every 100), at every step, and off, alternated in one process on the same
in-memory MNIST subset (the order rotates each round so drift hits each setting alike).

    LIT_OPT_DATA=../shared/datasets python benchmarks/diagnostics_cost.py [--nets mlp lenet5] [--rounds 3]

Prints per net and setting the median marginal epoch time (train/epoch_time of epochs after
the first) and its ratio to "off". Issue 15's budget: the default cadence within 5% of an epoch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

SETTINGS = {"off": (0, 0), "default": (10, 100), "every step": (1, 1)}


def epoch_seconds(net: str, every: int, histograms_every: int, data: str, train_size: int) -> float:
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
    job.run()
    times = [row["train/epoch_time"] for row in _epoch_rows(job)][1:]
    return statistics.median(times)


def _epoch_rows(job) -> list[dict]:
    from lit_opt.run_files import read_epochs

    return [{"train/epoch_time": float(r["train/epoch_time"])} for r in read_epochs(job.run_dir)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=["mlp", "lenet5"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--train_size", type=int, default=10000)
    args = p.parse_args()
    data = os.environ.get("LIT_OPT_DATA")
    if not data:
        raise SystemExit("set LIT_OPT_DATA to the datasets folder")
    names = list(SETTINGS)
    for net in args.nets:
        got: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                got[name].append(epoch_seconds(net, *SETTINGS[name], data, args.train_size))
        off = statistics.median(got["off"])
        for name in names:
            med = statistics.median(got[name])
            print(f"{net:7s} {name:11s} epoch {med:6.3f} s  x{med / off:5.3f}  "
                  f"({', '.join(f'{t:.3f}' for t in got[name])})", flush=True)


if __name__ == "__main__":
    main()
