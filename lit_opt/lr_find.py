"""`python -m lit_opt lr-find [fit options]`: Lightning's learning-rate range test.

    python -m lit_opt lr-find --model.optimizer adam --data.name fashion_mnist
    python -m lit_opt lr-find --config configs/seed003_best_mlp.yaml --json
    python -m lit_opt lr-find --model.optimizer sam --min_lr 1e-5 --max_lr 1 --num_training 200 --out lr_find

Trains `num_training` batches while the learning rate rises exponentially from `min_lr` to
`max_lr` (Lightning's `Tuner.lr_find`, Smith 2017), then prints the suggested rate (where
the smoothed loss falls fastest) and writes the loss-vs-lr plot and its data into `--out`.
The run takes the same options as `fit` and is built the same way; it leaves no run folder
and no checkpoint behind (the finder's own temporary checkpoint included), and it changes
nothing: the suggestion reaches a run only when you pass it as `--model.lr`.

Lightning's finder sets one rate for every parameter group and steps its scheduler only in
automatic optimization. lit_opt's module follows it in every strategy (SAM's two passes
too) and keeps each group's own multiple of model.lr (Muon's AdamW part), see
`ClassifierModule.lr_range_test`. `gd` (one step per epoch on the whole set) is refused: a
range test needs a step per batch.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

from lit_opt.errors import EXIT_BAD_INPUT, ConfigError

OWN_OPTIONS = ("--min_lr", "--max_lr", "--num_training", "--mode", "--json", "--out")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lit_opt lr-find", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Every other option is a `fit` option (python -m lit_opt fit --help).")
    p.add_argument("--min_lr", type=float, default=1e-6, help="the rate the test starts at (default 1e-6)")
    p.add_argument("--max_lr", type=float, default=1.0, help="the rate it ends at (default 1)")
    p.add_argument("--num_training", type=int, default=100, help="batches trained, one rate each (default 100)")
    p.add_argument("--mode", choices=("exponential", "linear"), default="exponential",
                   help="how the rate rises (default exponential)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", default="lr_find", help="folder for the plot and its data (default ./lr_find)")
    return p


def check_range(min_lr: float, max_lr: float, num_training: int) -> None:
    if not (math.isfinite(min_lr) and min_lr > 0):
        raise ConfigError(f"--min_lr must be a number in (0, inf); got {min_lr}")
    if not (math.isfinite(max_lr) and max_lr > min_lr):
        raise ConfigError(f"--max_lr must be a number larger than --min_lr ({min_lr:g}); got {max_lr}")
    if num_training < 10:
        raise ConfigError(f"--num_training must be at least 10 (the suggestion skips the first 10 "
                          f"batches); got {num_training}")


def find_lr(fit_args: Union[Sequence[str], dict], min_lr: float = 1e-6, max_lr: float = 1.0,
            num_training: int = 100, mode: str = "exponential") -> dict:
    """Run the range test on the run `fit_args` describe (`fit` options, or a config dict as
    `prepare_fit` takes); returns {"suggestion", "lr": [...], "loss": [...], "optimizer", "net",
    "dataset", ...}. Raises ConfigError for what cannot be tested."""
    check_range(min_lr, max_lr, num_training)
    from lightning.pytorch.tuner import Tuner

    from lit_opt import optim
    from lit_opt.jobs import prepare_fit

    scratch = Path(tempfile.mkdtemp(prefix="lit_opt_lr_find_"))
    job = None
    try:
        # The run is built in a scratch folder that goes at the end: no run folder, no .ckpt.
        if isinstance(fit_args, dict):
            config = copy.deepcopy(fit_args)
            config["run"] = {**(config.get("run") or {}), "root": str(scratch), "name": "lr_find"}
            config["trainer"] = {**(config.get("trainer") or {}), "enable_progress_bar": False,
                                 "enable_model_summary": False}
            job = prepare_fit(config)
        else:
            job = prepare_fit([*fit_args, "--run.root", str(scratch), "--run.name", "lr_find",
                               "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
        model = job.model
        name = model.hparams.optimizer
        if model.optimizer_info.full_batch:
            raise ConfigError(f"lr-find cannot test {name!r}: it steps once per epoch on the whole "
                              f"training set, and a range test needs a step per batch; try sgd")
        lr = float(model.hparams.lr if model.hparams.lr is not None
                   else optim.info(name).hyperparameter("lr").default)
        model.lr_range_test = _group_ratios(model, lr)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lr_find.*|.*LR finder.*|.*learning rate finder.*")
            finder = Tuner(job.trainer).lr_find(model, datamodule=job.datamodule, min_lr=min_lr, max_lr=max_lr,
                                                num_training=num_training, mode=mode, update_attr=False,
                                                early_stop_threshold=None)
        lrs = [float(v) for v in finder.results["lr"]]
        losses = [float(v) for v in finder.results["loss"]]
        suggestion = finder.suggestion()
        return {"suggestion": None if suggestion is None else float(suggestion), "lr": lrs, "loss": losses,
                "optimizer": name, "net": model.hparams.net, "dataset": job.datamodule.name,
                "batch_size": job.datamodule.batch_size, "min_lr": min_lr, "max_lr": max_lr,
                "num_training": num_training, "mode": mode, "configured_lr": lr}
    finally:
        if job is not None:
            job.release()
        shutil.rmtree(scratch, ignore_errors=True)


def _group_ratios(model, lr: float) -> list[float]:
    """Each parameter group's configured lr over model.lr (1 for all but Muon's AdamW part)."""
    probe = model.configure_optimizers()
    opt = probe["optimizer"] if isinstance(probe, dict) else probe
    return [float(g["lr"]) / lr for g in opt.param_groups]


def write_outputs(result: dict, out: Path) -> tuple[Path, Path]:
    """loss-vs-lr as PNG and CSV in `out`, under a new name (an existing file is never replaced)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result['dataset']}-{result['net']}-{result['optimizer']}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    n, base = 2, stem
    while (out / f"{stem}.png").exists() or (out / f"{stem}.csv").exists():
        stem, n = f"{base}-{n}", n + 1
    csv_path, png_path = out / f"{stem}.csv", out / f"{stem}.png"
    csv_path.write_text("lr,loss\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(result["lr"], result["loss"])))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot(result["lr"], result["loss"], color="#1f77b4")
    ax.set_xscale("log" if result["mode"] == "exponential" else "linear")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    if result["suggestion"] is not None:
        ax.axvline(result["suggestion"], color="#d62728", linestyle="--",
                   label=f"suggested {result['suggestion']:.3g}")
        ax.legend()
    ax.set_title(f"{result['optimizer']} on {result['dataset']} ({result['net']}), batch {result['batch_size']}, "
                 f"{len(result['lr'])} batches", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path, csv_path


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        _parser().print_help()
        return 0
    own, fit_args = _split(argv)
    args = _parser().parse_args(own)
    try:
        result = find_lr(fit_args, args.min_lr, args.max_lr, args.num_training, args.mode)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    png, csv_path = write_outputs(result, Path(args.out))
    result.update(plot=str(png), data=str(csv_path))
    if args.json:
        print(json.dumps(result))
        return 0
    s = result["suggestion"]
    print(f"{result['optimizer']} on {result['dataset']} ({result['net']}, batch {result['batch_size']}): "
          + (f"suggested lr {s:.3g}" if s is not None else "no suggestion (the loss never fell)")
          + f"; the test rose from {args.min_lr:g} to {result['lr'][-1]:.3g} over {len(result['lr'])} batches")
    print(f"plot: {png}\ndata: {csv_path}")
    if s is not None:
        print(f"train with it: python -m lit_opt fit {' '.join(fit_args)} --model.lr {s:.3g}".replace("  ", " "))
    return 0


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """This command's own options, and the rest (fit options) in their order."""
    own, rest, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        key = a.split("=", 1)[0]
        if key in OWN_OPTIONS:
            own.append(a)
            if key != "--json" and "=" not in a and i + 1 < len(argv):
                own.append(argv[i + 1])
                i += 1
        else:
            rest.append(a)
        i += 1
    return own, rest
