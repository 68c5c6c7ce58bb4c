"""Seconds per training epoch: lit_opt's CLI path against a plain PyTorch loop and the
tutorial torchvision pipeline, on the same MNIST training images, in one process.

    LIT_OPT_DATA=../shared/datasets python benchmarks/epoch.py [--repeats 3] [--nets mlp lenet5]

(a) plain: a hand-written loop over the same in-memory uint8 tensors (normalized per batch),
(b) lit_opt: `python -m lit_opt fit` through `lit_opt.cli.main`, marginal epoch time
    (train/epoch_time of epochs after the first, so start-up is not counted),
(c) tutorial: torchvision MNIST + ToTensor + Normalize + DataLoader(shuffle=True),
(d) bare Lightning: a LightningModule that only computes the loss, under a Trainer with
    logger, checkpoints, summary and progress bar off, over the same in-memory batches as
    (b), contiguous like (a): Lightning's own per-step cost (for the MLP, the floor under (b)).
Batch 100, SGD lr 0.1, the same net and thread count for all four, run alternately.
(b) keeps lit_opt's progress bar on, as users run it (--no-progress-bar turns it off).
`--device cuda`: (a) with the whole set on the device, (b) and (d) on the GPU (lit_opt keeps the
set on the device itself, data.on_device); (c) is skipped there (a CPU loader by design).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

def _checkout() -> Path:
    """The lit_opt to measure: this script's own checkout, or `--checkout DIR` (another
    revision, as benchmarks/revisions.py compares them)."""
    if "--checkout" in sys.argv:
        return Path(sys.argv[sys.argv.index("--checkout") + 1]).resolve()
    return Path(__file__).resolve().parents[1]


sys.path.insert(0, str(_checkout()))

from lit_opt import nets  # noqa: E402
from lit_opt.cli import main as lit_opt_main  # noqa: E402
from lit_opt.data import ClassificationDataModule, normalize  # noqa: E402

NET_ARGS = {"mlp": "{hidden: deep}", "lenet5": "{}"}
NET_KWARGS = {"mlp": {"hidden": "deep"}, "lenet5": {}}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_epoch(net_name: str, images, labels, mean, std, device: str = "cpu") -> float:
    torch.manual_seed(0)
    net = nets.build(net_name, (1, 28, 28), 10, **NET_KWARGS[net_name]).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    images, labels = images.to(device), labels.to(device)
    perm = torch.randperm(len(labels)).to(device)
    _sync(device)
    start = time.perf_counter()
    for i in range(0, len(labels), 100):
        idx = perm[i:i + 100]
        x = normalize(images[idx], mean, std)
        loss = F.cross_entropy(net(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - start


def tutorial_epoch(net_name: str, data_dir: str) -> float:
    import torchvision
    from torch.utils.data import DataLoader

    tf = torchvision.transforms.Compose([torchvision.transforms.ToTensor(),
                                         torchvision.transforms.Normalize((0.1307,), (0.3081,))])
    ds = torchvision.datasets.MNIST(data_dir, train=True, transform=tf)
    ds = torch.utils.data.Subset(ds, range(55_000))  # the same number of images as (a) and (b)
    torch.manual_seed(0)
    net = nets.build(net_name, (1, 28, 28), 10, **NET_KWARGS[net_name])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    start = time.perf_counter()
    for x, y in DataLoader(ds, batch_size=100, shuffle=True):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def bare_lightning_epochs(net_name: str, dm: ClassificationDataModule, epochs: int, device: str = "cpu") -> list[float]:
    import lightning as L

    class Bare(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nets.build(net_name, (1, 28, 28), 10, **NET_KWARGS[net_name])

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Clock(L.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_epoch_start(self, *args):
            _sync(device)
            self.start = time.perf_counter()

        def on_train_epoch_end(self, *args):
            _sync(device)
            self.times.append(time.perf_counter() - self.start)

    clock = Clock()
    trainer = L.Trainer(max_epochs=epochs, accelerator=device, devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=[clock])
    torch.manual_seed(0)
    trainer.fit(Bare(), datamodule=dm)
    return clock.times[1:]


def lit_opt_epochs(net_name: str, data_dir: str, epochs: int, extra: list[str], device: str = "cpu") -> list[float]:
    # The progress bar and the run's summary are drawn but not shown (the table is the output).
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as sink, \
            contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = lit_opt_main(["fit", "--data.data_dir", data_dir, "--data.batch_size", "100",
                             "--model.net", net_name, "--model.net_args", NET_ARGS[net_name],
                             "--model.optimizer", "sgd", "--model.lr", "0.1",
                             "--trainer.max_epochs", str(epochs), "--trainer.accelerator", device,
                             "--run.test", "false", "--run.root", tmp, *extra])
        assert code == 0
        run = next(Path(tmp).iterdir())
        with (run / "epochs.csv").open() as f:
            return [float(r["train/epoch_time"]) for r in csv.DictReader(f)][1:]


def summary(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nets", nargs="+", default=["mlp", "lenet5"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-progress-bar", action="store_true", help="turn lit_opt's progress bar off")
    parser.add_argument("--checkout", type=Path, default=None, help="measure the lit_opt in this folder")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--only", nargs="+", choices="abcd", default=list("abcd"),
                        help="run only these paths (b/d needs b and d)")
    args = parser.parse_args()
    data_dir = os.environ.get("LIT_OPT_DATA") or sys.exit("set LIT_OPT_DATA to the datasets folder")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    dm = ClassificationDataModule("mnist", data_dir=data_dir)
    dm.setup("fit")
    images, labels = dm.train_set
    extra = ["--trainer.enable_progress_bar", "false"] if args.no_progress_bar else []

    ratios = []
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads, {len(labels)} images, batch 100")
    print(f"{'net':<8} {'path':<16} seconds per epoch")
    for net_name in args.nets:
        plain, lit, tutorial, bare = [], [], [], []
        for _ in range(args.repeats):
            if "a" in args.only:
                plain.append(plain_epoch(net_name, images, labels, dm.info["mean"], dm.info["std"], args.device))
            if "b" in args.only:
                lit += lit_opt_epochs(net_name, data_dir, 3, extra, args.device)
            if "c" in args.only and args.device == "cpu":
                tutorial.append(tutorial_epoch(net_name, data_dir))
            if "d" in args.only:
                bare += bare_lightning_epochs(net_name, dm, 3, args.device)
        for label, xs in (("(a) plain", plain), ("(b) lit_opt", lit), ("(c) tutorial", tutorial),
                          ("(d) bare Lightning", bare)):
            if xs:
                print(f"{net_name:<8} {label:<18} {summary(xs)}", flush=True)
        med = {k: statistics.median(v) for k, v in (("a", plain), ("b", lit), ("c", tutorial), ("d", bare)) if v}
        pairs = (("b", "a"), ("c", "b"), ("d", "a"), ("b", "d"))
        ratios.append(f"{net_name}: " + ", ".join(f"{x}/{y} {med[x] / med[y]:.2f}" for x, y in pairs
                                                  if x in med and y in med))
    print("ratios: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
