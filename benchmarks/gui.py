"""Epoch time inside the desktop app vs headless, same config, same process, alternating.

    LIT_OPT_DATA=/path/to/datasets QT_QPA_PLATFORM=offscreen python benchmarks/gui.py [--repeats 3]

Each round trains the same config twice: once headless (`prepare_fit(...).run()`, no
listeners) and once in the real window (worker thread, live curves, weights and confusion
views redrawing). The time compared is `train/epoch_time` (training only, validation
excluded), the median over every epoch of each mode. The goal is a ratio <= 1.10.

OMP_NUM_THREADS defaults to 1 here: on a small shared machine, torch's 2-thread OpenMP
teams measured 6-8 s for 300 MLP steps in the main thread against 0.5-1.4 s in another
thread (and 0.55-0.62 s in both with one thread), which would compare OpenMP, not the app.
Set OMP_NUM_THREADS yourself to measure other thread counts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads (see above)

import gui  # noqa: E402,F401  (PySide6 6.12.0 guard)


def config(root: str, epochs: int, train_size: int) -> dict:
    data = {"name": "mnist", "train_size": train_size, "val_size": 2000, "batch_size": 100}
    if os.environ.get("LIT_OPT_DATA"):
        data["data_dir"] = os.environ["LIT_OPT_DATA"]
    return {"seed_everything": 0, "trainer": {"max_epochs": epochs, "accelerator": "cpu", "devices": 1},
            "model": {"net": "mlp", "net_args": {"hidden": "deep"}, "optimizer": "momentum", "lr": 0.05},
            "data": data, "run": {"root": root, "test": False}}


def headless(cfg: dict) -> list[float]:
    from lit_opt.jobs import prepare_fit
    from gui.worker import with_app_overrides

    from lit_opt.stream import Listener

    rows = []

    class Epochs(Listener):
        def on_epoch(self, row: dict) -> None:
            rows.append(row)

    job = prepare_fit(with_app_overrides(cfg), listeners=[Epochs()])  # the same display settings as in the app
    job.run()
    return [r["train/epoch_time"] for r in rows]


GUI_CPU: list[float] = []  # CPU seconds of the GUI thread per epoch, each app run


def in_app(window, cfg: dict) -> list[float]:
    from gui.screenshots import wait_until

    window.form.load_config(cfg)
    gui_cpu = time.thread_time()  # this (the GUI) thread's CPU time: what it took from training
    window.start()
    wait_until(lambda: window.running is not None, 120)
    rec = window.running
    wait_until(lambda: not window.is_running, 1200)
    if rec is None or rec.status != "finished":
        raise SystemExit(f"app run failed: {window.message.text()}")
    GUI_CPU.append((time.thread_time() - gui_cpu) / len(rec.epochs))
    return [e["train/epoch_time"] for e in rec.epochs]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-size", type=int, default=20000)
    args = p.parse_args()

    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow
    from gui.screenshots import wait_until

    app = QApplication.instance() or QApplication([])  # noqa: F841
    root = tempfile.mkdtemp(prefix="lit_opt_bench_")
    window = MainWindow(runs_root=root)
    window.show()
    wait_until(lambda: window.is_ready, 120)
    # Warm-up, both ways: data cached, kernels loaded, and the app's views built and painted
    # once (the first run in the window measured up to 2x slower epochs than later ones).
    headless(config(root, 1, 2000))
    in_app(window, config(root, 1, 2000))
    times = {"headless": [], "app": []}
    for r in range(args.repeats):
        cfg = config(root, args.epochs, args.train_size)
        times["headless"] += headless(cfg)
        times["app"] += in_app(window, cfg)
        print(f"round {r + 1}: headless {statistics.median(times['headless']):.3f} s/epoch, "
              f"app {statistics.median(times['app']):.3f} s/epoch", flush=True)
    window.dispose()
    h, a = statistics.median(times["headless"]), statistics.median(times["app"])
    import torch

    print(f"\nmnist deep MLP, {args.train_size} images/epoch, batch 100, CPU ({torch.get_num_threads()} "
          f"torch threads), {args.repeats} rounds x {args.epochs} epochs each")
    print(f"epoch time  headless {h:.3f} s   app {a:.3f} s   ratio app/headless {a / h:.3f} (goal <= 1.10)")
    # The GUI thread's own CPU time per epoch (its Python holds the GIL the training thread needs):
    # steadier than wall-clock ratios on a busy machine.
    runs = GUI_CPU[1:]  # without the warm-up
    print(f"GUI thread CPU per epoch: median {statistics.median(runs):.3f} s "
          f"({', '.join(f'{c:.3f}' for c in runs)}), {statistics.median(runs) / h:.1%} of a headless epoch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
