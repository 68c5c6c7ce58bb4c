"""`python -m lit_opt landscape`: loss and accuracy along a line or over a plane in weight space.

    python -m lit_opt landscape --ckpt_path checkpoints/RUN/best.ckpt --out landscape
    python -m lit_opt landscape --ckpt_path checkpoints/A/best.ckpt --to checkpoints/B/best.ckpt --out landscape
    python -m lit_opt landscape --ckpt_path checkpoints/RUN/best.ckpt --plane --steps 25 --out landscape --json

Line (default): the weights theta(alpha) = P + alpha (Q - P) for alpha from -0.25 to 1.25,
where P is the run's initial weights (RUN/init.pt, kept by lit_opt.initial_weights) and Q
the checkpoint, or P the checkpoint and Q `--to`'s (Goodfellow et al. 2015). Every float
tensor of the net moves along the line, BatchNorm's running statistics included.

Plane (`--plane`): theta(a, b) = A + a d1 + b d2 for a, b in [-1, 1], d1 and d2 seeded
random directions, filter-normalized (Li et al. 2018, "Visualizing the loss landscape of
neural nets"): each filter of a weight (a row of a dense layer's matrix, an output channel
of a convolution's kernel) is rescaled to the norm of the filter it perturbs, and biases
and BatchNorm parameters (every tensor of one dimension) do not move; buffers stay A's.

At each point: cross-entropy (without the L2 penalty) and accuracy on fixed, seeded subsets
(default 5,000 training images of the run's training split and 5,000 test images, named in
every output), with the net in eval mode (dropout off, BatchNorm on running statistics).
The net is evaluated by torch.func.functional_call under inference mode, a whole subset per
pass (`--batch_size`); a net that begins with a dense layer has that layer's outputs along
the directions computed once (it is linear in its weight), so each point costs the rest of
the net only (`Evaluator`). Writes CSV and PNG (a line plot; for the plane a contour plot and a
heat map) and a JSON description into `--out`, under a new name (nothing is replaced).
Checkpoints and init.pt are read weights-only and checked (lit_opt.inference.load).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch.func import functional_call

from lit_opt.errors import EXIT_BAD_INPUT, CheckpointError, ConfigError, LitOptError
from lit_opt.threads import threads_problem, torch_threads

NOTE = ("loss: cross-entropy without the L2 penalty; net in eval mode (dropout off, BatchNorm on its "
        "running statistics)")
LINE_RANGE = (-0.25, 1.25)
PLANE_RANGE = (-1.0, 1.0)


# --- directions -------------------------------------------------------------------------------


def filter_normalized_direction(params: dict, generator: torch.Generator) -> dict:
    """A random direction like `params` (name -> tensor), filter-normalized (Li et al. 2018):
    for every tensor of two or more dimensions, a Gaussian whose each filter (slice along
    dim 0) has the norm of the weight's filter at that index; tensors of one dimension or
    none (biases, BatchNorm's weight and bias) get zeros."""
    out = {}
    for name, w in params.items():
        if w.dim() <= 1:
            out[name] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        w_norm = w.flatten(1).norm(dim=1)
        out[name] = d * (w_norm / d_norm).view(-1, *([1] * (w.dim() - 1)))
    return out


# --- evaluation -------------------------------------------------------------------------------


class Evaluator:
    """Loss and accuracy of `net` at the weights base + sum_i c_i directions[i], on fixed
    subsets {split: (x, y)}, for any coefficients c.

    base: the net's full state (parameters and buffers); each direction: {name: tensor} for
    the tensors that move. When the net begins with a dense layer (after layers that are the
    identity in eval mode: Flatten, Dropout), that layer is linear in its weight on fixed
    inputs, so its outputs x W^T at the base and x D_i^T along each direction are computed
    once, and every point combines them: the 784-wide first layer of an MNIST MLP, most of
    its work, is done three times for a whole plane instead of once per point.
    """

    def __init__(self, net: torch.nn.Module, subsets: dict, base: dict, directions: list[dict],
                 batch_size: int = 5000, fast: bool = True):
        if batch_size < 1:
            raise ConfigError(f"--batch_size must be at least 1; got {batch_size}")
        self.net, self.base, self.directions, self.batch_size = net, base, directions, batch_size
        self.batches = {split: [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]
                        for split, (x, y) in subsets.items()}
        self.first = _first_dense(net) if fast else None
        if self.first is not None:
            self._prepare_first_layer()

    def _prepare_first_layer(self) -> None:
        index, name = self.first
        self.rest = self.net[index + 1:]  # a slice keeps the original names ("3.weight")
        rest_names = {f"{k}." for k in self.rest._modules}
        self.rest_keys = [k for k in self.base if any(k.startswith(p) for p in rest_names)]
        w, b = f"{name}.weight", f"{name}.bias"
        self.bias_key = b if b in self.base else None
        head = self.net[:index]
        with torch.inference_mode(), _eval(self.net):
            self.precomputed = {}
            for split, batches in self.batches.items():
                parts = []
                for x, y in batches:
                    flat = head(x)
                    zs = [flat @ self.base[w].T] + [flat @ d[w].T if w in d else None for d in self.directions]
                    parts.append((zs, y))
                self.precomputed[split] = parts

    def state(self, coefficients, keys=None) -> dict:
        """base + sum_i c_i directions[i], for `keys` only (default: every tensor)."""
        keys = self.base.keys() if keys is None else keys
        state = {k: self.base[k] for k in keys}
        for c, d in zip(coefficients, self.directions):
            for k in keys:
                if k in d and c:
                    state[k] = state[k] + c * d[k]
        return state

    @torch.inference_mode()
    def __call__(self, coefficients) -> dict:
        """coefficients (one per direction) -> {"train_loss", "train_acc", "test_loss", ...}."""
        # The fast path never needs the first layer's weight at the point: only the rest's
        # tensors and the first layer's bias (skipping the 784x100 weight's sums saves ~8%).
        keys = None if self.first is None else [*self.rest_keys, *([self.bias_key] if self.bias_key else [])]
        state = self.state(coefficients, keys)
        with _eval(self.net):
            out = {}
            for split, batches in self.batches.items():
                loss_sum, correct, n = 0.0, 0, 0
                if self.first is None:
                    outputs = ((functional_call(self.net, state, (x,)), y) for x, y in batches)
                else:
                    outputs = ((self._rest(zs, coefficients, state), y) for zs, y in self.precomputed[split])
                for logits, y in outputs:
                    loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                    correct += int((logits.argmax(1) == y).sum())
                    n += len(y)
                out[f"{split}_loss"] = loss_sum / n
                out[f"{split}_acc"] = correct / n
            return out

    def _rest(self, zs: list, coefficients, state: dict) -> torch.Tensor:
        h = zs[0].clone()
        for c, z in zip(coefficients, zs[1:]):
            if z is not None and c:
                h.add_(z, alpha=float(c))
        if self.bias_key is not None:
            h.add_(state[self.bias_key])
        return functional_call(self.rest, {k: state[k] for k in self.rest_keys}, (h,))


def _first_dense(net: torch.nn.Module):
    """(index, name) of a Sequential's first layer when it is dense and everything before it
    is the identity in eval mode (Flatten, Dropout, Identity); else None."""
    if not isinstance(net, torch.nn.Sequential):
        return None
    for index, (name, module) in enumerate(net._modules.items()):
        if isinstance(module, torch.nn.Linear):
            return index, name
        if not isinstance(module, (torch.nn.Flatten, torch.nn.Dropout, torch.nn.Identity)):
            return None
    return None


class _eval:
    """Every module in eval mode inside; each module's own flag restored after."""

    def __init__(self, net):
        self.net = net

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.net.modules()]
        self.net.eval()

    def __exit__(self, *exc):
        for m, flag in self.flags:
            m.training = flag


def _float_state(model) -> dict:
    return {k: v.detach() for k, v in model.net.state_dict().items()}


def _linspace(lo: float, hi: float, steps: int) -> list[float]:
    return [round(v, 10) for v in torch.linspace(lo, hi, steps, dtype=torch.float64).tolist()]


def check_same_net(a, b, a_path, b_path) -> None:
    """CheckpointError unless two models have the same net (names and shapes of every tensor)."""
    sa, sb = a.net.state_dict(), b.net.state_dict()
    same = sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)
    if not same:
        raise CheckpointError(f"{b_path} holds a different net ({b.hparams.net}, {_size(sb)} weights) from "
                              f"{a_path} ({a.hparams.net}, {_size(sa)} weights): a line between two "
                              f"checkpoints needs the same net, tensor for tensor")


def _size(state: dict) -> int:
    return sum(v.numel() for v in state.values() if v.is_floating_point())


# --- the command --------------------------------------------------------------------------------


def landscape(ckpt_path: str, to: Optional[str] = None, plane: bool = False, steps: Optional[int] = None,
              train_samples: int = 5000, test_samples: int = 5000, seed: int = 0, batch_size: int = 5000,
              data_dir: Optional[str] = None) -> dict:
    """Evaluate the line or plane; returns {"mode", "rows": [...], "about": {...}}. Raises
    LitOptError (CheckpointError, ConfigError, DataNotFoundError) with the reason."""
    from lit_opt import inference, subsets
    from lit_opt.initial_weights import initial_weights_path

    steps = steps if steps is not None else (25 if plane else 31)
    if steps < 2:
        raise ConfigError(f"--steps must be at least 2 (points along each axis); got {steps}")
    if batch_size < 1:
        raise ConfigError(f"--batch_size must be at least 1; got {batch_size}")
    if plane and to is not None:
        raise ConfigError("--plane draws directions around --ckpt_path; give --to (a line) or --plane, not both")
    subsets.check_samples(train_samples, "--train_samples")
    subsets.check_samples(test_samples, "--test_samples")
    model = inference.load(ckpt_path)
    center = _float_state(model)
    about = {"ckpt_path": str(ckpt_path), "net": model.hparams.net, "seed": seed, "steps": steps, "note": NOTE}
    # The line's other end is read and checked before any data loads.
    if plane:
        start = None
    elif to is not None:
        other = inference.load(to)
        check_same_net(model, other, ckpt_path, to)
        start, end, about["from"], about["to"] = center, _float_state(other), str(ckpt_path), str(to)
    else:
        init = initial_weights_path(Path(ckpt_path).parent)
        if not init.exists():
            raise CheckpointError(
                f"{init}: no initial weights beside {ckpt_path} (runs keep them as init.pt from now "
                f"on; this run is older). Draw the line from this checkpoint to another with --to B, "
                f"or the plane around it with --plane")
        first = inference.load(init)
        check_same_net(model, first, ckpt_path, init)
        start, end, about["from"], about["to"] = _float_state(first), center, f"initial weights ({init})", str(ckpt_path)
    ckpt = inference.read_checkpoint(ckpt_path)
    x_tr, y_tr, about_tr = subsets.training_subset(ckpt, train_samples, seed, data_dir, "--train_samples")
    x_te, y_te, about_te = subsets.test_subset(ckpt, test_samples, seed, data_dir, "--test_samples")
    data = {"train": (x_tr, y_tr), "test": (x_te, y_te)}
    about.update(dataset=about_tr["dataset"], train_subset=subsets.describe(about_tr),
                 test_subset=subsets.describe(about_te))
    t0 = time.perf_counter()
    rows = []
    if plane:
        params = [k for k, _ in model.net.named_parameters()]
        generator = torch.Generator().manual_seed(seed)
        weights = {k: center[k] for k in params}
        d1 = filter_normalized_direction(weights, generator)
        d2 = filter_normalized_direction(weights, generator)
        coords = _linspace(*PLANE_RANGE, steps)
        evaluate = Evaluator(model.net, data, center, [d1, d2], batch_size)
        for b in coords:
            for a in coords:
                rows.append({"alpha": a, "beta": b, **evaluate((a, b))})
        about.update(mode="plane", range=list(PLANE_RANGE), center=str(ckpt_path),
                     directions=f"two filter-normalized Gaussian directions (Li et al. 2018), seed {seed}; "
                                f"biases and BatchNorm parameters not moved")
    else:
        # Every float tensor moves along the line (BatchNorm's running statistics too).
        direction = {k: end[k] - start[k] for k in start if start[k].is_floating_point()}
        evaluate = Evaluator(model.net, data, start, [direction], batch_size)
        for a in _linspace(*LINE_RANGE, steps):
            rows.append({"alpha": a, **evaluate((a,))})
        about.update(mode="line", range=list(LINE_RANGE))
    about["seconds"] = round(time.perf_counter() - t0, 3)
    about["points"] = len(rows)
    return {"rows": rows, "about": about}


# --- files ----------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def write_outputs(result: dict, out: Path) -> dict:
    """CSV, PNG and JSON into `out` under a new stem; returns their paths."""
    about, rows = result["about"], result["rows"]
    out.mkdir(parents=True, exist_ok=True)
    stem = f"landscape-{about['mode']}-{about['net']}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    n, base = 2, stem
    while any((out / f"{stem}.{ext}").exists() for ext in ("csv", "png", "json")):
        stem, n = f"{base}-{n}", n + 1
    paths = {ext: out / f"{stem}.{ext}" for ext in ("csv", "png", "json")}
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (_plane_figure if about["mode"] == "plane" else _line_figure)(result, paths["png"])
    paths["json"].write_text(json.dumps(about, indent=2) + "\n")
    return {k: str(v) for k, v in paths.items()}


def _line_figure(result: dict, path: Path) -> None:
    plt = _pyplot()
    about, rows = result["about"], result["rows"]
    alphas = [r["alpha"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for split, colour in (("train", "#1f77b4"), ("test", "#d62728")):
        ax_loss.plot(alphas, [r[f"{split}_loss"] for r in rows], color=colour, label=split)
        ax_acc.plot(alphas, [r[f"{split}_acc"] for r in rows], color=colour, label=split)
    for ax, label in ((ax_loss, "cross-entropy"), (ax_acc, "accuracy")):
        for x in (0.0, 1.0):
            ax.axvline(x, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("alpha")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    losses = [r[f"{s}_loss"] for r in rows for s in ("train", "test")]
    if min(losses) > 0 and max(losses) / min(losses) > 20:  # a log axis only where it helps
        ax_loss.set_yscale("log")
    fig.suptitle(f"{about['net']}: alpha 0 = {Path(about['from'].split(' (')[-1].rstrip(')')).name}, "
                 f"alpha 1 = {Path(about['to']).name}\ntrain: {about['train_subset']}; test: "
                 f"{about['test_subset']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plane_figure(result: dict, path: Path) -> None:
    import numpy as np

    plt = _pyplot()
    about, rows = result["about"], result["rows"]
    coords = sorted({r["alpha"] for r in rows})
    k = len(coords)
    loss = np.array([r["train_loss"] for r in rows]).reshape(k, k)  # rows: beta, columns: alpha
    fig, (ax_c, ax_h) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110)
    log_loss = np.log10(np.clip(loss, 1e-12, None))
    cs = ax_c.contour(coords, coords, log_loss, levels=20, cmap="viridis")
    ax_c.clabel(cs, fontsize=6, fmt="%.2f")
    ax_c.plot([0], [0], marker="*", color="red", markersize=10)
    ax_c.set_title("log10 training loss, contours", fontsize=9)
    im = ax_h.imshow(log_loss, origin="lower", extent=(coords[0], coords[-1], coords[0], coords[-1]),
                     cmap="viridis", aspect="equal")
    fig.colorbar(im, ax=ax_h, label="log10 training loss")
    ax_h.set_title("log10 training loss, heat map", fontsize=9)
    for ax in (ax_c, ax_h):
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
    fig.suptitle(f"{about['net']} around {Path(about['ckpt_path']).name} (filter-normalized directions, "
                 f"seed {about['seed']})\ntrain: {about['train_subset']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lit_opt landscape", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", required=True, help="the checkpoint A (the line's end, or the plane's centre)")
    p.add_argument("--to", default=None, help="a checkpoint B of the same net: the line from A to B")
    p.add_argument("--plane", action="store_true", help="a 2-D grid of filter-normalized directions around A")
    p.add_argument("--steps", type=int, default=None,
                   help="points along the line (default 31) or along each side of the plane (default 25)")
    p.add_argument("--train_samples", type=int, default=5000, help="training images in the subset (default 5000)")
    p.add_argument("--test_samples", type=int, default=5000, help="test images in the subset (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and the plane's directions (default 0)")
    p.add_argument("--batch_size", type=int, default=5000, help="images per forward pass (default 5000)")
    p.add_argument("--data_dir", default=None,
                   help="the datasets folder (default: the run's own when it exists here, else $LIT_OPT_DATA)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: each point is a few small matrix products, and "
                        "on a shared 2-core machine two threads that wait for a core made the 25x25 plane "
                        "9x slower, docs/performance.md; 0: torch's default, all cores)")
    p.add_argument("--out", required=True, help="folder for the CSV, PNG and JSON")
    p.add_argument("--json", action="store_true", help="print the description (and the files) as JSON")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    problem = threads_problem(args.threads)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with torch_threads(args.threads):
            result = landscape(args.ckpt_path, args.to, args.plane, args.steps, args.train_samples,
                               args.test_samples, args.seed, args.batch_size, args.data_dir)
    except LitOptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    files = write_outputs(result, Path(args.out))
    about = {**result["about"], "files": files}
    rows = result["rows"]
    best = min(rows, key=lambda r: r["train_loss"])
    about["lowest_train_loss"] = best
    if args.json:
        print(json.dumps(about))
        return 0
    print(f"{about['mode']} of {about['net']}: {about['points']} points in {about['seconds']:.1f} s")
    print(f"  train: {about['train_subset']}\n  test:  {about['test_subset']}\n  {NOTE}")
    where = ", ".join(f"{k} {best[k]:g}" for k in ("alpha", "beta") if k in best)
    print(f"  lowest training loss {best['train_loss']:.4g} at {where}")
    for ext, path in files.items():
        print(f"{ext}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
