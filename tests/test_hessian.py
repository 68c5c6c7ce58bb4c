"""Sharpness (lit_opt/hessian.py): Hessian-vector products, the top eigenvalue and the
Hutchinson trace against independent references (closed form, numpy, torch.autograd's
full Hessian); the stability thresholds; the `sharpness` command's output and refusals."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_opt.errors import ConfigError
from lit_opt.hessian import TrainingObjective, stability_threshold


def _tiny_softmax(l2: float = 0.0):
    """A real ClassifierModule: the linear net on 2x2 one-channel images, 3 classes (15 weights),
    in float64; 40 random images."""
    from lit_opt.module import ClassifierModule

    info = {"dataset": "mnist", "input_shape": [1, 2, 2], "num_classes": 3, "class_names": ["a", "b", "c"],
            "mean": [0.5], "std": [0.25]}
    torch.manual_seed(0)
    model = ClassifierModule(net="linear", l2=l2, data_info=info).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 1, 2, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return model, x, y


def _exact_hessian(model, x, y, l2: float = 0.0) -> np.ndarray:
    """The full Hessian of mean CE (+ l2 * ||W||^2, bias excluded) by torch.autograd.functional."""
    names = [n for n, _ in model.net.named_parameters()]
    shapes = [p.shape for _, p in model.net.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in model.net.named_parameters()])

    def f(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            k = math.prod(s)
            params[n] = flat[i:i + k].view(s)
            i += k
        loss = F.cross_entropy(torch.func.functional_call(model.net, params, (x,)), y)
        return loss + l2 * sum(params[n].pow(2).sum() for n in names if n.endswith("weight"))

    return torch.autograd.functional.hessian(f, flat0).numpy()


def test_power_iteration_matches_the_closed_form_of_least_squares():
    # f(w) = mean (x.w - y)^2 has Hessian 2 X^T X / n: numpy's largest eigenvalue is the reference.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 6, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1, 1, 0.5, 0.5, 0.2], dtype=torch.float64)
    y = torch.randn(64, generator=g, dtype=torch.float64)
    net = nn.Linear(6, 1, bias=False).double()
    model = SimpleNamespace(net=net, hparams={"l2": 0.0})
    obj = TrainingObjective(model, X, y, batch_size=24,  # batches of 24, 24, 16: the weighting is tested too
                            criterion=lambda out, t: (out.squeeze(-1) - t).pow(2).mean())
    top = obj.top_eigenvalue(seed=0, tol=1e-10, max_iter=500)
    expected = np.linalg.eigvalsh(2 * X.numpy().T @ X.numpy() / 64).max()
    assert top["converged"]
    assert top["lambda_max"] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("l2", [0.05])  # the penalty on: the cross-entropy part alone is checked by the trace test
def test_power_iteration_matches_eigvalsh_of_the_exact_hessian(l2):
    model, x, y = _tiny_softmax(l2)
    H = _exact_hessian(model, x, y, l2)
    obj = TrainingObjective(model, x, y, batch_size=40)
    # Hessian-vector products equal H v for a random v.
    v = {n: torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(3))
         for n, p in obj.params.items()}
    hv = obj.hvp(v)
    flat_v = torch.cat([v[n].reshape(-1) for n in obj.params]).numpy()
    flat_hv = torch.cat([hv[n].reshape(-1) for n in obj.params]).numpy()
    np.testing.assert_allclose(flat_hv, H @ flat_v, rtol=1e-8, atol=1e-10)
    top = obj.top_eigenvalue(seed=0, tol=1e-8, max_iter=2000)
    assert top["lambda_max"] == pytest.approx(np.linalg.eigvalsh(H).max(), rel=1e-3)


def test_hutchinson_trace_is_within_five_percent_with_1000_probes():
    model, x, y = _tiny_softmax()
    exact = np.trace(_exact_hessian(model, x, y))
    got = TrainingObjective(model, x, y).trace(probes=1000, seed=0, chunk=250)
    assert got["trace"] == pytest.approx(exact, rel=0.05)
    assert got["stderr"] > 0 and got["probes"] == 1000


def test_the_objective_uses_eval_mode_and_leaves_the_module_as_it_was():
    model, x, y = _tiny_softmax(l2=0.01)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    obj = TrainingObjective(model, x, y)
    obj.top_eigenvalue(max_iter=5)
    assert model.training and all(m.training for m in model.net.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad():  # the linear net: Flatten, Linear; the penalty is on the weight, not the bias
        expected = F.cross_entropy(model.net(x), y) + 0.01 * model.net[-1].weight.pow(2).sum()
    assert obj.loss() == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.parametrize("name, lr, momentum, nesterov, expected", [
    ("gd", 0.1, 0.0, False, 20.0),
    ("sgd", 0.05, 0.0, False, 40.0),
    ("momentum", 0.01, 0.9, False, 380.0),
    ("nesterov", 0.01, 0.9, True, 3.8 / (0.01 * 2.8)),
    ("gd", 0.1, 0.5, False, 30.0),  # gd with momentum is heavy ball
])
def test_stability_thresholds(name, lr, momentum, nesterov, expected):
    value, formula = stability_threshold(name, lr, momentum, nesterov)
    assert value == pytest.approx(expected)
    assert "lr" in formula


def test_the_threshold_formulas_hold_on_a_quadratic():
    # The threshold is where the update on f = a w^2 / 2 stops contracting: just below it the
    # iterate shrinks, just above it grows (an independent check of the three formulas).
    def grows(name, lr, beta, a):
        w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([w], lr=lr, momentum=beta, nesterov=name == "nesterov")
        for _ in range(400):
            opt.zero_grad()
            (0.5 * a * w.pow(2)).sum().backward()
            opt.step()
        return abs(float(w)) > 1.0

    for name, beta in (("sgd", 0.0), ("momentum", 0.9), ("nesterov", 0.9)):
        lr = 0.01
        threshold, _ = stability_threshold(name, lr, beta, name == "nesterov")
        assert not grows(name, lr, beta, 0.9 * threshold)
        assert grows(name, lr, beta, 1.1 * threshold)


def test_adaptive_methods_have_no_plain_threshold_and_bad_input_is_named():
    value, text = stability_threshold("adam", 1e-3)
    assert value is None and "does not apply" in text
    with pytest.raises(ConfigError, match="unknown optimizer 'nope'.*choose one of"):
        stability_threshold("nope", 0.1)
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        stability_threshold("sgd", 0.0)
    with pytest.raises(ConfigError, match=r"momentum must be in \[0, 1\)"):
        stability_threshold("momentum", 0.1, 1.5)


# --- the live source and the command ---------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """A small MNIST in torchvision's layout (random digits and labels): 600 training, 200 test."""
    from tests.test_catalogue import write_mnist

    return write_mnist(tmp_path_factory.mktemp("mnist"))


class _Rows:
    def __init__(self):
        self.rows, self.info = [], None

    def on_start(self, info):
        self.info = info

    def on_steps(self, rows):
        self.rows += rows

    def on_epoch(self, row):
        pass


def _tiny_fit(data_dir, sources):
    """8 steps of a dropout MLP (dropout draws from the global RNG) on 200 images: its final
    weights, the batches' losses, and what the listener got."""
    import lightning as L

    from lit_opt.data import ClassificationDataModule
    from lit_opt.diagnostics.basics import StepLoss
    from lit_opt.module import ClassifierModule
    from lit_opt.stream import LiveStream
    from tests.conftest import quiet_trainer

    L.seed_everything(0, verbose=False)
    dm = ClassificationDataModule("mnist", data_dir=str(data_dir), download=False, val_size=100, train_size=200,
                                  batch_size=25)
    model = ClassifierModule(net="mlp", net_args={"hidden": [16]}, dropout=0.25, l2=1e-3, optimizer="momentum",
                             lr=0.05, data_info=dm.info)
    rows = _Rows()
    trainer = quiet_trainer(max_steps=8, limit_val_batches=0,
                            callbacks=[LiveStream([StepLoss(), *sources], [rows], flush_seconds=1e9)])
    trainer.fit(model, datamodule=dm)
    return [p.detach().clone() for p in model.parameters()], rows


def test_the_sharpness_source_gives_its_series_and_leaves_the_run_unchanged(mnist_dir):
    from lit_opt.diagnostics.sharpness import Sharpness

    plain_weights, plain = _tiny_fit(mnist_dir, [])
    weights, measured = _tiny_fit(mnist_dir, [Sharpness(every=3, samples=100, max_iter=10)])
    # Same weights, same batch losses (same batches, same dropout masks) with it on and off.
    assert all(torch.equal(a, b) for a, b in zip(plain_weights, weights))
    assert [r["train/loss"] for r in plain.rows] == [r["train/loss"] for r in measured.rows]
    assert {"train/sharpness", "train/stability_threshold"} <= set(measured.info["series"])
    got = [r for r in measured.rows if "train/sharpness" in r]
    assert [r["step"] for r in got] == [3, 6]
    assert all(r["train/sharpness"] > 0 for r in got)
    assert all(r["train/stability_threshold"] == pytest.approx((2 + 2 * 0.9) / 0.05) for r in got)
    assert not any("train/sharpness" in r for r in plain.rows)


def test_the_sharpness_source_is_off_by_default_and_checks_its_cadence():
    from lit_opt.diagnostics.sharpness import Sharpness

    assert Sharpness().start(None, None) is None and Sharpness(every=0).start(None, None) is None
    with pytest.raises(ConfigError, match="whole number of steps >= 0"):
        Sharpness(every=-1)


def run_checkpoint(path, net: str = "linear", seed: int = 0):
    """A real checkpoint (one step on random data) that records, as a fit run's does, the data
    module's split of the small MNIST: 100 validation images, so 500 for training."""
    from tests.test_inference import make_checkpoint

    make_checkpoint(path, net=net, seed=seed)
    ckpt = torch.load(path, weights_only=True)
    ckpt["datamodule_hyper_parameters"] = {"name": "mnist", "val_size": 100, "split_seed": 0}
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def linear_ckpt(tmp_path_factory):
    return run_checkpoint(tmp_path_factory.mktemp("sharp") / "linear.ckpt")


def test_the_sharpness_command_prints_json_with_its_keys(linear_ckpt, mnist_dir, capsys):
    from lit_opt.cli import main

    code = main(["sharpness", "--ckpt_path", str(linear_ckpt), "--samples", "200", "--probes", "20",
                 "--data_dir", str(mnist_dir), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"lambda_max", "trace", "samples", "trace_stderr", "threshold", "threshold_formula", "subset"} <= set(out)
    assert out["samples"] == 200 and out["lambda_max"] > 0 and out["trace"] > out["lambda_max"]
    assert out["threshold"] is None and "does not apply" in out["threshold_formula"]  # trained with adam
    assert "eval mode" in out["objective"] and "200 of the 500 training images" in out["subset"]


@pytest.mark.parametrize("args, message", [
    (["--ckpt_path", "{missing}"], "no such file"),
    (["--ckpt_path", "{ckpt}", "--samples", "-5"], "--samples must be a whole number of images, at least 1; got -5"),
    (["--ckpt_path", "{ckpt}", "--samples", "100000"], "larger than the 500 images of the run's training split"),
])
def test_the_sharpness_command_refuses_bad_input_clearly(linear_ckpt, mnist_dir, tmp_path, capsys, args, message):
    from lit_opt.sharpness_cli import main

    argv = [a.format(missing=tmp_path / "nope.ckpt", ckpt=linear_ckpt) for a in args]
    assert main([*argv, "--data_dir", str(mnist_dir)]) == 2
    assert message in capsys.readouterr().err
