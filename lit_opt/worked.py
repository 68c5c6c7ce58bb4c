"""The optimizer seminar's worked examples (seed 000), recomputed through the registry.

Each example returns our values (computed by the same optimizers that train the nets)
beside the values the seminar printed, with a note where the seminar's number is wrong
(its Adam table does not follow from Adam as Kingma & Ba 2015, Algorithm 1, defines it). `python -m lit_opt toy
worked` prints them side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lit_opt.optim.steps import optimizer_steps

@dataclass
class Worked:
    """One hand calculation from the seed: our values (via the registry) beside the seed's."""

    key: str
    title: str
    setup: str
    columns: tuple[str, ...]
    rows: list[str]
    ours: list[tuple[float, ...]]
    seed: list[tuple[float, ...]]
    notes: dict[int, str] = field(default_factory=dict)  # row -> why the seed's value is wrong

    def agrees(self, row: int, places: int = 4) -> bool:
        """True if our row equals the seed's printed row to `places` decimals."""
        return all(abs(a - b) <= 0.5 * 10 ** -places + 1e-12
                   for a, b in zip(self.ours[row], self.seed[row]))


def _fit(optimizer: str, xs, ys, steps: int, per_sample: bool, **hp):
    """Fit y_hat = x @ w + b with loss (y_hat - y)^2 through the registry.

    per_sample: one step per row, cyclic (the seed's SGD); else one step on the
    mean loss over all rows (full-batch gradient descent). Returns (w..., b) after each step.
    """
    x = torch.tensor(xs, dtype=torch.float64).reshape(len(xs), -1)
    y = torch.tensor(ys, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    step = [0]

    def loss():
        r = slice(step[0] % len(y), step[0] % len(y) + 1) if per_sample else slice(None)
        return ((x[r] @ w + b - y[r]) ** 2).mean()

    out = []
    for _ in optimizer_steps([w, b], optimizer, loss, steps, **hp):
        step[0] += 1
        out.append(tuple(w.tolist()) + (b.item(),))
    return out


def worked_x2_without_lr() -> Worked:
    x = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
    grads, values = [], []
    for _ in optimizer_steps([x], "gd", lambda: (x ** 2).sum(), 50, lr=1.0):  # lr 1: m <- m - gradient
        grads.append(x.grad.item())  # the gradient this step used (taken before the update)
        values.append(x.item())
    picks = [1, 2, 3, 4, 5, 6, 7, 8, 30, 50]
    seed = [(10.0 if k % 2 else -10.0, -5.0 if k % 2 else 5.0) for k in picks]
    return Worked("x2_no_lr", "x^2 from x = 5 without a learning rate",
                  "new_m = old_m - gradient (gd with lr 1.0); it bounces between -5 and 5 forever",
                  ("gradient", "new_m"), [f"iteration {k}" for k in picks],
                  [(grads[k - 1], values[k - 1]) for k in picks], seed)


def worked_x2_with_lr() -> Worked:
    x = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
    steps, prev = [], 5.0
    for _ in optimizer_steps([x], "gd", lambda: (x ** 2).sum(), 50, lr=0.1):
        steps.append(abs(x.item() - prev))
        prev = x.item()
    picks = [1, 2, 3, 4, 5, 6, 7, 8, 10, 20, 50]
    seed = [1.0, 0.8, 0.64, 0.512, 0.4096, 0.3277, 0.2621, 0.2621, 0.1342, 0.0144, 0.000017]
    return Worked("x2_lr", "x^2 from x = 5 with learning rate 0.1",
                  "gd with lr 0.1: x <- 0.8 x, so step k has size 0.8^(k-1) (x = 4 after step 1)",
                  ("step size",), [f"iteration {k}" for k in picks],
                  [(steps[k - 1],) for k in picks], [(s,) for s in seed],
                  {7: "the seed repeats iteration 7's 0.2621; 0.8^7 = 0.2097"})


_TABLE_X = [[1, 2], [2, 1], [3, 3], [4, 5], [5, 4], [6, 6]]
_TABLE_Y = [5, 6, 10, 13, 14, 17]


def worked_gd_table() -> Worked:
    (step,) = _fit("gd", _TABLE_X, _TABLE_Y, 1, per_sample=False, lr=0.01)
    return Worked("gd_table", "one full-batch gradient descent step on the 6-row table",
                  "y_hat = w1 x1 + w2 x2 + b, loss = mean (y - y_hat)^2, from 0, lr 0.01",
                  ("w1", "w2", "b"), ["after step 1"], [step], [(0.9033, 0.8967, 0.2167)])


def worked_sgd_table() -> Worked:
    ours = _fit("sgd", _TABLE_X, _TABLE_Y, 2, per_sample=True, lr=0.01)
    return Worked("sgd_table", "per-sample SGD on the 6-row table",
                  "one step per row, loss (y - y_hat)^2, from 0, lr 0.01",
                  ("w1", "w2", "b"), ["after row 1", "after row 2"], ours,
                  [(0.1, 0.2, 0.1), (0.32, 0.31, 0.21)])


_LINE_X, _LINE_Y = [1, 2, 3], [2, 4, 6]
_SEED_ADAM = [(0.1000, 0.1000), (0.2308, 0.2200), (0.3828, 0.3578), (0.4968, 0.4553),
              (0.6194, 0.5609), (0.7515, 0.6809), (0.8579, 0.7753), (0.9642, 0.8690),
              (1.0740, 0.9694)]


def _swap(rows):
    # _fit returns (slope, intercept); the seed's columns are (theta0 = intercept, theta1 = slope).
    return [(b, w) for w, b in rows]


def worked_sgd_line() -> Worked:
    ours = _swap(_fit("sgd", _LINE_X, _LINE_Y, 9, per_sample=True, lr=0.1))
    seed = [(0.4, 0.4), (0.96, 1.52), (1.056, 1.808), (0.8832, 1.6352), (0.8525, 1.5738),
            (0.9377, 1.8295), (0.7843, 1.6761), (0.7570, 1.6215), (0.8327, 1.8486)]
    return Worked("sgd_line", "per-sample SGD fitting y = theta0 + theta1 x to X=[1,2,3], Y=[2,4,6]",
                  "loss (y_hat - y)^2, cyclic order, from 0, lr 0.1",
                  ("theta0", "theta1"), [f"iteration {k}" for k in range(1, 10)], ours, seed)


def adam_step_bound(t: int, betas=(0.9, 0.999)) -> float:
    """Largest |m_hat / sqrt(v_hat)| any gradient sequence can give at step t (Cauchy-Schwarz):
    so no Adam step moves a coordinate by more than lr times this."""
    b1, b2 = betas
    a = [(1 - b1) * b1 ** (t - i) / (1 - b1 ** t) for i in range(1, t + 1)]
    c = [(1 - b2) * b2 ** (t - i) / (1 - b2 ** t) for i in range(1, t + 1)]
    return math.sqrt(sum(ai * ai / ci for ai, ci in zip(a, c)))


def worked_adam_line() -> Worked:
    ours = _swap(_fit("adam", _LINE_X, _LINE_Y, 9, per_sample=True, lr=0.1))
    bound = 0.1 * adam_step_bound(2)
    notes = {1: f"not Adam: the seed moves theta0 by {0.2308 - 0.1:.4f} in step 2, but no "
                f"gradients let Adam (lr 0.1, betas 0.9/0.999) move a coordinate by more than "
                f"{bound:.4f} in step 2"}
    for row in range(2, 9):
        notes[row] = "continues from the seed's wrong step 2"
    return Worked("adam_line", "Adam on the same line fit (per-sample, cyclic)",
                  "torch Adam, lr 0.1, betas (0.9, 0.999), eps 1e-8, from 0",
                  ("theta0", "theta1"), [f"iteration {k}" for k in range(1, 10)], ours,
                  _SEED_ADAM, notes)


WORKED = {f.__name__.removeprefix("worked_"): f for f in (
    worked_x2_without_lr, worked_x2_with_lr, worked_gd_table, worked_sgd_table, worked_sgd_line,
    worked_adam_line)}


def worked_examples() -> list[Worked]:
    return [make() for make in WORKED.values()]


def format_worked(example: Worked) -> str:
    lines = [example.title, f"  {example.setup}"]
    width = max(len(r) for r in example.rows)
    head = "  ".join(f"{c:>9}" for c in example.columns)
    lines.append(f"  {'':{width}}  ours: {head}   seed: {head}")
    for i, row in enumerate(example.rows):
        ours = "  ".join(f"{v:9.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:9.2e}"
                         for v in example.ours[i])
        seed = "  ".join(f"{v:9.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:9.2e}"
                         for v in example.seed[i])
        verdict = "ok" if example.agrees(i) else f"DIFFERS: {example.notes.get(i, 'unexplained')}"
        lines.append(f"  {row:{width}}        {ours}         {seed}   {verdict}")
    return "\n".join(lines)


