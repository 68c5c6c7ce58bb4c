"""Toy problems: the seed's worked numbers, the functions' minima, trajectories, plots and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lit_opt import toy, worked
from lit_opt.optim import names

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---- worked examples (seed 000) -----------------------------------------------------------------


@pytest.mark.parametrize("key", list(worked.WORKED))
def test_worked_example_reproduces_the_seed(key):
    example = worked.WORKED[key]()
    assert len(example.ours) == len(example.seed) == len(example.rows)
    for row in range(len(example.rows)):
        if row in example.notes:
            # A documented seed mistake must really be one, or the note is wrong.
            assert not example.agrees(row), f"{example.rows[row]} is flagged but agrees"
        else:
            assert example.agrees(row), (example.rows[row], example.ours[row], example.seed[row])


def test_worked_numbers_from_algorithms_md():
    gd = worked.worked_gd_table().ours[0]
    assert np.allclose(gd, (271 / 300, 269 / 300, 65 / 300))  # 0.01 * (2/6) * sum(x*y), exact
    adam = worked.worked_adam_line().ours
    expected = [(0.1, 0.1), (0.1973, 0.1893), (0.2942, 0.2770), (0.3840, 0.3533)]
    assert np.allclose(adam[:4], expected, atol=5e-5)
    # The documented seed mistakes are exactly these.
    assert set(worked.worked_x2_with_lr().notes) == {7}
    assert set(worked.worked_adam_line().notes) == set(range(1, 9))


def test_adam_step_bound():
    # At t = 1 Adam's step is exactly lr * sign(g); the bound must be 1 there and just above after.
    assert worked.adam_step_bound(1) == pytest.approx(1.0)
    assert 1.0 < worked.adam_step_bound(2) < 1.002
    # The bound is attained: a gradient sequence proportional to a_i / c_i reaches it.
    b1, b2, t = 0.9, 0.999, 2
    grads = [b1 ** (t - i) / b2 ** (t - i) for i in range(1, t + 1)]
    m = sum((1 - b1) * b1 ** (t - i) * g for i, g in zip(range(1, t + 1), grads)) / (1 - b1 ** t)
    v = sum((1 - b2) * b2 ** (t - i) * g * g for i, g in zip(range(1, t + 1), grads)) / (1 - b2 ** t)
    assert m / math.sqrt(v) == pytest.approx(worked.adam_step_bound(2))


# ---- functions and trajectories ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(toy.FUNCTIONS))
def test_minimum_is_stationary(name):
    spec = toy.FUNCTIONS[name]
    x = torch.tensor(spec.minimum, dtype=torch.float64, requires_grad=True)
    value = spec.f(x)
    (grad,) = torch.autograd.grad(value, x)
    assert grad.abs().max() < 1e-9
    assert abs(value.item()) < 1e-12  # all six have minimum value 0
    # And it is lower than the start.
    assert spec.f(torch.tensor(spec.start, dtype=torch.float64)).item() > value.item()
    assert all(lo < s < hi for s, (lo, hi) in zip(spec.start, spec.window))


@pytest.mark.parametrize("name,lr,steps", [("bowl", 0.05, 300), ("rosenbrock", 0.05, 1000),
                                           ("ill_bowl", 0.05, 300)])
def test_adam_gets_closer(name, lr, steps):
    spec = toy.FUNCTIONS[name]
    traj = toy.run(name, "adam", steps=steps, lr=lr)
    assert traj.points.shape == (steps + 1, 2) and traj.losses.shape == (steps + 1,)
    goal = np.array(spec.minimum)
    start_distance = np.linalg.norm(traj.points[0] - goal)
    assert np.linalg.norm(traj.points[-1] - goal) < 0.2 * start_distance
    assert traj.losses[-1] < 1e-2 * traj.losses[0]


@pytest.mark.parametrize("optimizer", names())
def test_every_optimizer_runs_on_a_toy(optimizer):
    if optimizer not in toy.toy_optimizers():  # muon: made for a net's weight matrices
        with pytest.raises(ValueError, match="weight matrices.*cannot run here"):
            toy.run("bowl", optimizer, steps=5)
        return
    traj = toy.run("bowl", optimizer, steps=5)
    assert np.isfinite(traj.points).all()
    assert traj.losses[-1] < traj.losses[0]


def test_matrix_optimizers_are_listed_apart(capsys):
    assert "muon" in names() and "muon" not in toy.toy_optimizers()
    assert toy.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "muon" not in out.split("optimizers:")[1].splitlines()[0]
    assert "not here (they need a net's weight matrices): muon" in out


def test_gd_on_x2_is_the_seed_recursion():
    traj = toy.run("x2", "gd", steps=3, lr=0.1)
    assert np.allclose(traj.points[:, 0], [5.0, 4.0, 3.2, 2.56])


def test_run_rejects_bad_input():
    with pytest.raises(ValueError, match="choose one of: x2, bowl"):
        toy.run("himmelblau", "adam")
    with pytest.raises(ValueError, match="unknown optimizer"):
        toy.run("bowl", "adamz")
    with pytest.raises(ValueError, match="2 coordinate"):
        toy.run("bowl", "adam", start=[1.0])


# ---- plots and CLI -------------------------------------------------------------------------------


def test_plot_1d_and_2d(tmp_path):
    for name in ("x2", "beale"):
        path = tmp_path / f"{name}.png"
        toy.plot([toy.run(name, "sgd", steps=10, lr=0.01)], name, path)
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_cli_run_writes_png(tmp_path, capsys):
    path = tmp_path / "out.png"
    code = toy.main(["run", "--function", "rosenbrock", "--optimizer", "adam,momentum",
                     "--optimizer", "sam", "--lr", "0.001", "--steps", "50", "--set", "momentum=0.8",
                     "--png", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    for name in ("adam", "momentum", "sam"):
        assert name in out
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    from matplotlib.image import imread

    assert imread(str(path)).shape[2] in (3, 4)


def test_cli_worked_prints_both_columns(capsys):
    assert toy.main(["worked"]) == 0
    out = capsys.readouterr().out
    assert "0.9033" in out and "0.2308" in out and "0.1973" in out
    assert "DIFFERS: not Adam" in out and "unexplained" not in out


@pytest.mark.parametrize("argv,needle", [
    (["run", "--function", "nope"], "choose one of: x2, bowl, ill_bowl"),
    (["run", "--optimizer", "adamz"], "choose one of: gd, sgd"),
    (["run", "--optimizer", "adam", "--lr", "-1"], "lr must be a number in (0, inf)"),
    (["run", "--optimizer", "adam", "--set", "rho=0.1"], "no chosen optimizer has rho"),
    (["run", "--start", "a,b"], "--start must be 2"),
])
def test_cli_errors_are_one_line(argv, needle, capsys):
    assert toy.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_cli_usage_error_exit_code(capsys):
    assert toy.main(["fly"]) == 2
    assert "invalid choice" in capsys.readouterr().err
