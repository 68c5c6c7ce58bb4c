"""Toy problems for watching optimizers move (the seminar's worked examples: lit_opt/worked.py).

    python -m lit_opt toy run --function rosenbrock --optimizer adam,momentum --lr 0.01 \\
        --steps 500 --png rosenbrock.png
    python -m lit_opt toy worked      # the seed's hand calculations beside ours
    python -m lit_opt toy list

Every trajectory and every worked number goes through the optimizer registry
(`lit_opt.optim.build`), so these are the same optimizers that train the nets.
matplotlib is imported only to draw (Agg, no pyplot state, no Qt).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from lit_opt.declarations.toys import TOY_FUNCTIONS
from lit_opt.optim import info, names, schema, validate
from lit_opt.optim.steps import optimizer_steps


# ---- the functions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyFunction:
    """f maps a float64 tensor (..., dim) to (...); window is one (low, high) per axis."""

    name: str
    description: str
    f: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, ...]
    window: tuple[tuple[float, float], ...]
    minimum: tuple[float, ...]

    @property
    def dim(self) -> int:
        return len(self.start)


def _rosenbrock(p):
    x, y = p[..., 0], p[..., 1]
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def _rastrigin(p):
    return 10 * p.shape[-1] + (p ** 2 - 10 * torch.cos(2 * math.pi * p)).sum(-1)


def _beale(p):
    x, y = p[..., 0], p[..., 1]
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2
            + (2.625 - x + x * y ** 3) ** 2)


FUNCTIONS: dict[str, ToyFunction] = {f.name: f for f in (
    ToyFunction("x2", TOY_FUNCTIONS["x2"], lambda p: (p ** 2).sum(-1),
                (5.0,), ((-6.0, 6.0),), (0.0,)),
    ToyFunction("bowl", TOY_FUNCTIONS["bowl"], lambda p: (p ** 2).sum(-1),
                (-4.0, 3.0), ((-5.0, 5.0), (-5.0, 5.0)), (0.0, 0.0)),
    # Hessian diag(1, 50): condition number 50, the valley that makes plain GD zigzag.
    ToyFunction("ill_bowl", TOY_FUNCTIONS["ill_bowl"],
                lambda p: 0.5 * (p[..., 0] ** 2 + 50 * p[..., 1] ** 2),
                (-4.5, 1.0), ((-5.0, 5.0), (-2.0, 2.0)), (0.0, 0.0)),
    ToyFunction("rosenbrock", TOY_FUNCTIONS["rosenbrock"], _rosenbrock,
                (-1.2, 1.0), ((-2.0, 2.0), (-1.0, 3.0)), (1.0, 1.0)),
    ToyFunction("rastrigin", TOY_FUNCTIONS["rastrigin"], _rastrigin,
                (-2.3, 2.6), ((-5.12, 5.12), (-5.12, 5.12)), (0.0, 0.0)),
    ToyFunction("beale", TOY_FUNCTIONS["beale"], _beale,
                (1.0, 1.5), ((-4.5, 4.5), (-4.5, 4.5)), (3.0, 0.5)),
)}


def function(name: str | ToyFunction) -> ToyFunction:
    """Look a toy function up by name; ValueError listing the names if unknown."""
    if isinstance(name, ToyFunction):
        return name
    key = name.strip().lower()
    if key not in FUNCTIONS:
        raise ValueError(f"unknown function {name!r}; choose one of: {', '.join(FUNCTIONS)}")
    return FUNCTIONS[key]


# ---- running an optimizer on one -----------------------------------------------------------------


@dataclass
class Trajectory:
    function: str
    optimizer: str
    hyperparameters: dict
    points: np.ndarray  # (steps + 1, dim), the start included
    losses: np.ndarray  # (steps + 1,)

    @property
    def label(self) -> str:
        lr = self.hyperparameters.get("lr")
        return f"{self.optimizer} (lr {lr:g})" if lr is not None else self.optimizer


def toy_optimizers() -> list[str]:
    """Registry optimizers that can run on a toy function: all but those made for weight
    matrices (muon), which have nothing to act on in a single point."""
    return [name for name in names() if not info(name).needs_matrices]


def run(function_name: str | ToyFunction, optimizer: str, steps: int = 100,
        start: Sequence[float] | None = None, **hyperparameters) -> Trajectory:
    """Minimize a toy function from `start` (default: its own) with a registry optimizer.

    There is no data set here, so `gd` (full batch) and `sgd` take the same steps.
    A diverging run keeps going: its points become inf/nan and the plot skips them.
    """
    spec = function(function_name)
    hp = validate(optimizer, **hyperparameters)
    if info(optimizer).needs_matrices:
        raise ValueError(f"{info(optimizer).name} works on a net's weight matrices; a toy "
                         f"function's point is a single vector, so it cannot run here "
                         f"(toy optimizers: {', '.join(toy_optimizers())})")
    x = torch.tensor(start if start is not None else spec.start, dtype=torch.float64,
                     requires_grad=True)
    if x.shape != (spec.dim,):
        raise ValueError(f"start must have {spec.dim} coordinate(s) for {spec.name}")
    points, losses = [x.detach().clone()], [spec.f(x).item()]
    for _ in optimizer_steps([x], optimizer, lambda: spec.f(x), steps, **hp):
        points.append(x.detach().clone())
        losses.append(spec.f(x).item())
    return Trajectory(spec.name, info(optimizer).name, hp, torch.stack(points).numpy(),
                      np.array(losses))


def plot(trajectories: Sequence[Trajectory], function_name: str | ToyFunction, path,
         title: str | None = None) -> None:
    """Write a PNG: the trajectories over the function's contours (1-D: over its curve)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    spec = function(function_name)
    fig = Figure(figsize=(7, 5.5), dpi=100)
    ax = fig.add_subplot()
    (x0, x1) = spec.window[0]
    if spec.dim == 1:
        xs = torch.linspace(x0, x1, 400, dtype=torch.float64)
        ax.plot(xs.numpy(), spec.f(xs[:, None]).numpy(), color="0.6")
        for traj in trajectories:
            ax.plot(traj.points[:, 0], traj.losses, marker="o", markersize=3, label=traj.label)
        ax.set_xlabel("x")
        ax.set_ylabel("f(x)")
    else:
        (y0, y1) = spec.window[1]
        gx, gy = torch.meshgrid(torch.linspace(x0, x1, 300, dtype=torch.float64),
                                torch.linspace(y0, y1, 300, dtype=torch.float64), indexing="xy")
        z = spec.f(torch.stack([gx, gy], -1))
        # log1p of the height above the minimum: one recipe that shows bowls and valleys alike.
        fmin = spec.f(torch.tensor(spec.minimum, dtype=torch.float64)).item()
        ax.contour(gx.numpy(), gy.numpy(), torch.log1p(z - fmin).numpy(), levels=30,
                   cmap="viridis", linewidths=0.7)
        for traj in trajectories:
            line, = ax.plot(traj.points[:, 0], traj.points[:, 1], marker=".", markersize=3,
                            linewidth=1, label=traj.label)
            ax.plot(*traj.points[0], marker="o", color=line.get_color())
        ax.plot(*spec.minimum, marker="*", markersize=14, color="red", linestyle="none",
                label="minimum")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    ax.set_title(title or f"{spec.name}: {spec.description}", fontsize=10)
    if trajectories:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")


# ---- command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lit_opt toy",
                                     description="Toy problems and the seed's worked examples.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worked", help="print the seed's worked examples beside ours")
    sub.add_parser("list", help="list the toy functions and optimizers")
    r = sub.add_parser("run", help="run optimizers on a toy function")
    r.add_argument("--function", default="rosenbrock", help=f"one of: {', '.join(FUNCTIONS)}")
    r.add_argument("--optimizer", action="append", default=None,
                   help="registry name; repeat or comma-separate for several (default adam)")
    r.add_argument("--lr", type=float, default=None, help="learning rate (default: each optimizer's)")
    r.add_argument("--steps", type=int, default=200, help="number of steps (default 200)")
    r.add_argument("--start", default=None, help="start point, e.g. -1.2,1 (default: the function's)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another hyperparameter, for every optimizer that has it (repeatable)")
    r.add_argument("--png", default=None, help="write the trajectories over the contours here")
    return parser


def _run_command(args) -> int:
    spec = function(args.function)
    opts = [info(n).name for item in (args.optimizer or ["adam"]) for n in item.split(",") if n]
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1; got {args.steps}")
    start = None
    if args.start is not None:
        try:
            start = [float(v) for v in args.start.split(",")]
        except ValueError:
            raise ValueError(f"--start must be {spec.dim} comma-separated numbers") from None
    extra = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE; got {item!r}")
        extra[key.strip()] = value.strip()
    if args.lr is not None:
        extra["lr"] = args.lr
    per_opt = {}
    for name in opts:
        keys = {hp.name for hp in schema(name)}
        if name == "sam":  # SAM also takes its base optimizer's keys
            keys |= set(validate("sam", **({"base": extra["base"]} if "base" in extra else {})))
        per_opt[name] = {k: v for k, v in extra.items() if k in keys}
    unused = set(extra) - {k for hp in per_opt.values() for k in hp}
    if unused:
        raise ValueError(f"no chosen optimizer has {', '.join(sorted(unused))}")
    for name in opts:
        validate(name, **per_opt[name])  # every error before the first step

    trajectories = [run(spec, name, steps=args.steps, start=start, **per_opt[name])
                    for name in opts]
    goal = np.array(spec.minimum)
    start_text = ", ".join(f"{v:g}" for v in trajectories[0].points[0])
    print(f"{spec.name}: {spec.description}; start ({start_text}), minimum {spec.minimum}, "
          f"{args.steps} steps")
    for traj in trajectories:
        end = traj.points[-1]
        if not np.isfinite(traj.losses).all():
            first = int(np.argmin(np.isfinite(traj.losses)))
            print(f"  {traj.label:24} diverged at step {first} (loss not finite); lower the lr")
            continue
        where = ", ".join(f"{v:.4f}" for v in end)
        print(f"  {traj.label:24} final ({where})  f = {traj.losses[-1]:.4g}  "
              f"distance to minimum {np.linalg.norm(end - goal):.4g}")
    if args.png:
        plot(trajectories, spec, args.png)
        print(f"wrote {args.png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m lit_opt toy ...`; argv is what follows `toy`."""
    if argv is None:
        argv = sys.argv[1:]
        if argv[:1] == ["toy"]:
            argv = argv[1:]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # argparse has printed its message; hand back its code
        return int(exit.code or 0)
    try:
        if args.command == "worked":
            from lit_opt.worked import format_worked, worked_examples

            print("\n\n".join(format_worked(w) for w in worked_examples()))
            return 0
        if args.command == "list":
            print("functions:  " + ", ".join(FUNCTIONS))
            print("optimizers: " + ", ".join(toy_optimizers()))
            matrix_only = [n for n in names() if info(n).needs_matrices]
            if matrix_only:
                print("not here (they need a net's weight matrices): " + ", ".join(matrix_only))
            return 0
        return _run_command(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
