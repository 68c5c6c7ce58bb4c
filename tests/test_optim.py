"""The optimizer registry: parametrized over names(), so a new entry is tested the moment it exists.

Schemas and defaults, validation messages, one descent step, exact checkpoint
round-trips, split_decay, and the pytorch_optimizer.SAM contract the
LightningModule relies on. Numerical agreement with the algorithms is in
test_optim_reference.py.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from lit_opt import optim
from lit_opt.optim import build, decay_parameters, info, names, schema, split_decay, validate

EXPECTED_NAMES = ["gd", "sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam",
                  "adamw", "lamb", "sam", "adamp", "expectigrad", "nadam", "radam", "adamax",
                  "adafactor", "lion", "muon", "ademamix", "soap", "prodigy", "schedulefree_adamw",
                  "schedulefree_sgd"]
# Settings that turn momentum on where an optimizer has it, so state round-trips carry a buffer.
WITH_MOMENTUM = {"gd": dict(momentum=0.9), "rmsprop": dict(momentum=0.9)}
# SOAP's first step only builds its preconditioner (the authors' code never projects a
# gradient onto a basis made from it).
FIRST_STEP_SETS_UP = {"soap"}
# Schedule-Free SGD's authors' default lr 1.0 is a full gradient step at first, past this
# quadratic's minimum; its averaged sequence descends within a few steps.
DESCENDS_WITHIN = {"schedulefree_sgd": 4}


def test_names_in_order():
    assert names() == EXPECTED_NAMES


def test_import_is_lazy():
    # Startup time is measured: the registry must not pull in pytorch_optimizer (or build anything).
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, lit_opt.optim as o; o.validate('sam', base='adamp'); "
            "print('pytorch_optimizer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_entry_metadata(name):
    entry = info(name)
    assert entry.name == name and entry.description and entry.source
    assert entry.full_batch == (name == "gd")
    assert entry.needs_closure == (name == "sam")
    fields = [hp.name for hp in schema(name)]
    assert "lr" in fields and "weight_decay" in fields
    assert len(set(fields)) == len(fields)
    for hp in schema(name):
        assert hp.help and "\n" not in hp.help
        assert hp.check(hp.default, name) == hp.default, f"{name}.{hp.name} default out of range"
    assert info(name).hyperparameter("lr").log_scale


def test_lookup_is_case_insensitive():
    assert info("AdamW").name == "adamw"
    assert validate(" SGD ") == validate("sgd")


@pytest.mark.parametrize("bad", ["adamx", "", "SGDm"])
def test_unknown_name_lists_choices(bad):
    for call in (lambda: info(bad), lambda: validate(bad), lambda: build(bad, [])):
        with pytest.raises(ValueError, match="unknown optimizer") as err:
            call()
        assert ", ".join(EXPECTED_NAMES) in str(err.value)


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_unknown_key_lists_allowed(name):
    with pytest.raises(ValueError, match="unknown hyperparameter") as err:
        validate(name, learning_rate=0.1)
    assert "learning_rate" in str(err.value)
    for hp in schema(name):
        assert hp.name in str(err.value)


def _out_of_range_values():
    """(name, field, bad value) for every bounded number in every schema, both sides."""
    cases = []
    for name in EXPECTED_NAMES:
        for hp in schema(name):
            if hp.type not in (float, int, tuple):
                continue
            bad = []
            if hp.low is not None:
                bad.append(hp.low if not hp.low_inclusive else hp.low - 0.5)
            if hp.high is not None and math.isfinite(hp.high):  # [1, inf] has no value above
                bad.append(hp.high if not hp.high_inclusive else hp.high + 0.5)
            bad.append(float("nan"))
            for value in bad:
                if hp.type is tuple:
                    value = (hp.default[0], value)
                cases.append((name, hp.name, value))
    return cases


@pytest.mark.parametrize("name,field,value", _out_of_range_values())
def test_out_of_range_names_field_and_range(name, field, value):
    with pytest.raises(ValueError) as err:
        validate(name, **{field: value})
    message = str(err.value)
    assert f"{name}: {field}" in message
    assert info(name).hyperparameter(field).range_text in message


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_lr_must_be_positive(name):
    for lr in (0, -1e-3, float("inf")):
        with pytest.raises(ValueError, match=r"lr must be a number in \(0, inf\)"):
            validate(name, lr=lr)


def test_values_are_coerced_and_completed():
    # YAML reads 1e-3 as a string; the CLI passes everything as strings.
    out = validate("adam", lr="1e-3", betas="0.8, 0.99", amsgrad="true")
    assert out == dict(lr=1e-3, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.0, amsgrad=True)
    assert validate("adam", betas=[0.5, 0.6])["betas"] == (0.5, 0.6)
    with pytest.raises(ValueError, match="betas must be 2 numbers"):
        validate("adam", betas=(0.9,))
    with pytest.raises(ValueError, match="amsgrad must be true or false"):
        validate("adam", amsgrad="maybe")
    with pytest.raises(ValueError, match="lr must be a number"):
        validate("sgd", lr=True)


def test_sam_validates_against_its_base():
    assert validate("sam") == dict(base="sgd", rho=0.05, adaptive=False, lr=0.01, momentum=0.9,
                                   weight_decay=0.0)
    adam = validate("sam", base="Adam", betas=(0.8, 0.9))
    assert adam["base"] == "adam" and adam["betas"] == (0.8, 0.9) and adam["lr"] == 1e-3
    with pytest.raises(ValueError, match=r"sam \(base adam\): unknown hyperparameter.*momentum"):
        validate("sam", base="adam", momentum=0.9)
    with pytest.raises(ValueError, match="base must be one of: sgd, momentum") as err:
        validate("sam", base="gd")
    assert "sam" not in str(err.value).split("one of:")[1]
    with pytest.raises(ValueError, match=r"rho must be a number in \[0, inf\)"):
        validate("sam", rho=-0.1)


# ---- behaviour of every optimizer ----------------------------------------------------------------


def _quadratic(params):
    w, b, *more = params
    target_w = torch.linspace(-1.0, 1.0, 12).reshape(3, 4)
    curvature = torch.linspace(0.5, 2.0, 12).reshape(3, 4)
    return ((curvature * (w - target_w) ** 2).sum() + ((b - 0.5) ** 2).sum()
            + sum(((m - 0.3) ** 2).sum() for m in more))


def _params(seed=0, dtype=torch.float32, name=None):
    """A 3x4 weight and a bias; for optimizers that need matrices (muon) two more weights,
    so that one of them (4x5) is a hidden layer between a first and a last one."""
    g = torch.Generator().manual_seed(seed)
    params = [(0.1 * torch.randn(3, 4, generator=g)).to(dtype).requires_grad_(),
              torch.zeros(4, dtype=dtype).requires_grad_()]
    if name is not None and info(name).needs_matrices:
        params += [(0.1 * torch.randn(4, 5, generator=g)).to(dtype).requires_grad_(),
                   (0.1 * torch.randn(2, 3, generator=g)).to(dtype).requires_grad_()]
    return params


def _step(opt, params, loss_fn):
    def closure():
        opt.zero_grad()
        loss = loss_fn(params)
        loss.backward()
        return loss

    closure()
    opt.step(closure) if isinstance(opt, _sam_class()) else opt.step()


def _sam_class():
    from pytorch_optimizer import SAM

    return SAM


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_defaults_build_and_descend(name):
    params = _params(name=name)
    opt = build(name, params)
    assert isinstance(opt, torch.optim.Optimizer)
    group = opt.param_groups[0]
    for key, value in validate(name).items():
        if key not in ("base", "sparse_counter"):  # SAM's base is not a group key
            assert group[key] == value, f"param_groups[0][{key!r}]"
    before = _quadratic(params).item()
    _step(opt, params, _quadratic)
    if name in FIRST_STEP_SETS_UP:
        assert _quadratic(params).item() == before
        _step(opt, params, _quadratic)
    for _ in range(DESCENDS_WITHIN.get(name, 1) - 1):
        _step(opt, params, _quadratic)
    assert _quadratic(params).item() < before


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_state_dict_round_trip_is_exact(name):
    hp = WITH_MOMENTUM.get(name, {})
    uninterrupted = _params(name=name)
    opt = build(name, uninterrupted, **hp)
    for _ in range(6):
        _step(opt, uninterrupted, _quadratic)

    first = _params(name=name)
    opt = build(name, first, **hp)
    for _ in range(3):
        _step(opt, first, _quadratic)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # a real serialization, as a checkpoint does
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    if name != "sgd":  # plain SGD (momentum fixed at 0) is stateless
        assert saved["state"], "the optimizer should have state to carry"

    resumed = [p.detach().clone().requires_grad_() for p in first]
    opt = build(name, resumed, **hp)
    opt.load_state_dict(saved)
    for _ in range(3):
        _step(opt, resumed, _quadratic)
    for a, b in zip(uninterrupted, resumed):
        assert torch.equal(a, b)


# ---- the pytorch_optimizer.SAM contract ----------------------------------------------------------


def test_sam_step_order_and_groups():
    """step(closure) = first_step (perturb, zero grads), closure at w + e, second_step (restore w,
    base step). The module's manual-optimization loop relies on exactly this."""
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = build("sam", [w], lr=0.1, momentum=0.0, rho=0.5)
    seen = {}

    def loss_fn():
        return (w ** 4).sum()

    loss_fn().backward()
    g = w.grad.clone()
    e = 0.5 * g / g.norm()

    def closure():
        seen["grad_zeroed"] = w.grad is None or bool((w.grad == 0).all())
        seen["w"] = w.detach().clone()
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    w0 = w.detach().clone()
    assert opt.step(closure) is None  # note: SAM.step returns None, not the loss
    assert seen["grad_zeroed"]
    assert torch.allclose(seen["w"], w0 + e)
    g2 = 4 * (w0 + e) ** 3
    assert torch.allclose(w.detach(), w0 - 0.1 * g2)


def test_sam_exposes_groups_to_schedulers():
    w = torch.zeros(3, requires_grad=True)
    opt = build("sam", [w], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    w.grad = torch.ones(3)
    opt.step(lambda: (w.sum()))  # closure result unused here; gradients stay ones
    scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups[0]["momentum"] == 0.9


def test_sam_without_closure_is_an_error():
    w = torch.zeros(3, requires_grad=True)
    opt = build("sam", [w])
    w.grad = torch.ones(3)
    with pytest.raises(Exception, match="closure"):
        opt.step()


# ---- weight-decay split --------------------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(8, 3)
        self.norm = nn.LayerNorm(3)
        self.frozen = nn.Linear(3, 3, bias=False).requires_grad_(False)


def test_split_decay_excludes_biases_and_norms():
    net = _Net()
    decayed, free = split_decay(net.named_parameters(), weight_decay=0.05)
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert decayed["weight_decay"] == 0.05 and free["weight_decay"] == 0.0
    assert ids(decayed["params"]) == ids([net.conv.weight, net.fc.weight])
    assert ids(free["params"]) == ids([net.conv.bias, net.bn.weight, net.bn.bias, net.fc.bias,
                                       net.norm.weight, net.norm.bias])
    assert ids(decay_parameters(net.named_parameters())) == ids(decayed["params"])
    assert ids(decay_parameters(net)) == ids(decayed["params"])  # a module works too

    (everything,) = split_decay(net.named_parameters(), 0.05, exclude_bias_and_norm=False)
    assert len(everything["params"]) == 8  # all trainable ones; the frozen weight is skipped

    (only,) = split_decay(nn.Linear(4, 2, bias=False).named_parameters(), 0.1)
    assert only["weight_decay"] == 0.1  # the empty no-decay group is dropped

    opt = build("adamw", split_decay(net.named_parameters(), 0.05), lr=1e-3, weight_decay=0.5)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_public_api_names():
    for attr in ("Hyperparameter", "OptimizerInfo", "names", "schema", "info", "build", "validate",
                 "split_decay", "decay_parameters"):
        assert hasattr(optim, attr)
    from lit_opt.optim.registry import split_decay as from_registry  # the documented import path

    assert from_registry is split_decay


@pytest.mark.parametrize("base", [b for b in names() if b not in ("gd", "sam")])
def test_sam_keeps_its_own_rho_whatever_the_base(base):
    """SAM's rho (default 0.05) must never be replaced by a base optimizer's key of the same name."""
    assert validate("sam", base=base)["rho"] == 0.05
    params = _params(name=base)
    opt = build("sam", params, base=base, rho=0.2)
    assert opt.param_groups[0]["rho"] == 0.2


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adagrad", "adam", "adamw"])
def test_torch_optimizers_step_with_fused_kernels_on_cpu(name):
    """Fused kernels are 2-4x faster per step on CPU (registry._fused); the reference tests
    in test_optim_reference.py check that their steps follow the published rules."""
    net = torch.nn.Linear(4, 3)
    opt = optim.build(name, net.parameters())
    assert all(group["fused"] for group in opt.param_groups)
    plain_sgd = optim.build("sgd", net.parameters())
    assert not plain_sgd.param_groups[0].get("fused")  # no faster fused: torch's default


def test_infinity_only_where_the_range_includes_it():
    """Prodigy's growth_rate is [1, inf] (the authors' default inf: no cap); every other field
    refuses inf as before, and nan everywhere."""
    assert validate("prodigy")["growth_rate"] == math.inf
    assert validate("prodigy", growth_rate="inf")["growth_rate"] == math.inf
    assert info("prodigy").hyperparameter("growth_rate").range_text == "[1, inf]"
    for bad in (float("nan"), -math.inf, 0.5):
        with pytest.raises(ValueError, match=r"growth_rate must be a number in \[1, inf\]"):
            validate("prodigy", growth_rate=bad)
    with pytest.raises(ValueError, match="d_coef must be"):
        validate("prodigy", d_coef=math.inf)


# ---- module glue: muon refused before data, its split in summary.json, AdEMAMix's "auto" ---------


def test_muon_on_a_net_without_hidden_matrix_is_refused_before_any_data(tmp_path, capsys):
    """The module refuses muon on `linear` when it is constructed: exit 2 with muon's message,
    not the missing data set's (the data folder does not exist), and no run folder."""
    from lit_opt.cli import main

    code = main(["fit", "--model.optimizer", "muon", "--model.net", "linear",
                 "--data.data_dir", str(tmp_path / "no-such-folder"), "--data.download", "false",
                 "--run.root", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false"])
    err = capsys.readouterr().err
    assert code == 2
    assert "hidden 2-D weight matrices" in err and "this net has none" in err
    assert "not in" not in err and "download" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_muon_split_is_in_the_run_summary(tmp_path, monkeypatch):
    import json

    from lit_opt.cli import main
    from tests.test_data import make_dataset

    make_dataset("mnist", tmp_path, monkeypatch)
    runs = tmp_path / "runs"
    code = main(["fit", "--model.optimizer", "muon", "--model.net", "mlp",
                 "--model.net_args", '{"hidden": [8, 8]}', "--data.data_dir", str(tmp_path),
                 "--data.download", "false", "--data.val_size", "10", "--data.batch_size", "25",
                 "--trainer.max_epochs", "1", "--run.root", str(runs), "--run.test", "false",
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    assert code == 0
    (run_dir,) = list(runs.iterdir())
    parts = json.loads((run_dir / "summary.json").read_text())["optimizer_parts"]
    assert [part for part in parts.values()] == ["adamw", "adamw", "muon", "adamw", "adamw", "adamw"]
    assert next(name for name, part in parts.items() if part == "muon").endswith("weight")


def test_ademamix_warmups_take_auto():
    from lit_opt.optim import TOTAL_STEPS, fill_total_steps

    hp = validate("ademamix", alpha_warmup="auto", beta3_warmup="AUTO")
    assert hp["alpha_warmup"] == hp["beta3_warmup"] == TOTAL_STEPS == "auto"
    assert validate("ademamix")["alpha_warmup"] == 0  # the authors' default: no warm-up
    assert fill_total_steps(hp, 140)["alpha_warmup"] == 140
    with pytest.raises(ValueError, match="total number of steps"):
        fill_total_steps(hp, float("inf"))
    with pytest.raises(ValueError, match="alpha_warmup 'auto' is the run's total number of steps"):
        build("ademamix", [torch.zeros(2, requires_grad=True)], alpha_warmup="auto")
    with pytest.raises(ValueError, match=r"alpha_warmup must be an integer in \[0, inf\) or auto"):
        validate("ademamix", alpha_warmup="sometimes")
