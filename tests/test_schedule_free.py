"""Schedule-Free AdamW and SGD (Defazio et al. 2024; facebookresearch/schedule_free) and the
callback that evaluates them at their average (lit_opt/eval_point.py).

- the registry's two entries against a float64 transcription of the authors' update rule in
  its three-sequence form (their *_reference.py: z, x and y stored apart), written here and
  never calling the library, over 50 steps with warm-up, weight decay and the lr_max weighting,
  at the training point y and at the evaluation point x;
- the registry tests of tests/test_optim.py, run for the two new names;
- EvalPoint in a real Trainer: validation reports the accuracy at x, a resumed run continues
  exactly, evaluating never changes the training (batches, random state, weights), BatchNorm
  statistics are recomputed at x without touching the training batches or the global random
  state, best.ckpt holds x and what `classify` loads is x;
- check_schedule warns about a learning-rate schedule.
"""

from __future__ import annotations

import copy
import math
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lit_opt import optim
from lit_opt.data import ClassificationDataModule, normalize
from lit_opt.eval_point import (CHECKPOINT_KEY, EvalPoint, ScheduleWarning, check_schedule, needs_eval_point,
                                switchable)
from lit_opt.module import ClassifierModule
from tests.test_data import make_dataset
from tests.test_optim import _params, _quadratic, _step
from tests.test_optim import test_entry_metadata as _entry_metadata
from tests.test_optim import test_lr_must_be_positive as _lr_must_be_positive
from tests.test_optim import test_out_of_range_names_field_and_range as _out_of_range
from tests.test_optim import test_state_dict_round_trip_is_exact as _state_dict_round_trip
from tests.test_optim import test_unknown_key_lists_allowed as _unknown_key

NAMES = ["schedulefree_adamw", "schedulefree_sgd"]


# ---- the update rule: an independent float64 reference --------------------------------------------


def _problem(seed=0):
    """A two-layer net's weights: matrices and vectors, in two groups as split_decay makes them."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(5, 4, generator=g, dtype=torch.float64) * 0.5
    b1 = torch.randn(4, generator=g, dtype=torch.float64) * 0.1
    w2 = torch.randn(4, 3, generator=g, dtype=torch.float64) * 0.5
    b2 = torch.zeros(3, dtype=torch.float64)
    return [w1, b1, w2, b2]


def _loss(params, k):
    """A different mini-batch at every step k (a stochastic problem, so the average matters)."""
    w1, b1, w2, b2 = params
    g = torch.Generator().manual_seed(1000 + k)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    target = torch.randn(8, 3, generator=g, dtype=torch.float64)
    return ((torch.tanh(x @ w1 + b1) @ w2 + b2 - target) ** 2).mean()


def _grads(params, k):
    leaves = [p.detach().clone().requires_grad_() for p in params]
    return torch.autograd.grad(_loss(leaves, k), leaves)


def _reference(name, hp, start, steps, decays):
    """The authors' rule with z, x and y stored apart (adamw_schedulefree_reference.py,
    sgd_schedulefree_reference.py). Step k = 0, 1, ... with the gradient g at y:

        lr_k = lr * min(1, (k+1)/warmup_steps); lr_max = max(lr_max, lr_k)
        weight = (k+1)^r * lr_max^weight_lr_power; c = weight / (sum of weights so far)
        u = g / (sqrt(v / (1 - beta2^(k+1))) + eps), v = beta2 v + (1-beta2) g^2   (AdamW)
        u = g                                                                     (SGD)
        z <- z - lr_k (u + weight_decay y);  x <- (1-c) x + c z;  y = beta x + (1-beta) z

    Returns the lists of (y, x) after every step."""
    adam = name == "schedulefree_adamw"
    lr, wd_default = hp["lr"], hp.get("weight_decay", 0.0)
    beta = hp["betas"][0] if adam else hp["momentum"]
    beta2 = hp["betas"][1] if adam else None
    eps, warmup, r, power = hp.get("eps", 1e-8), hp["warmup_steps"], hp["r"], hp["weight_lr_power"]
    z = [p.clone() for p in start]
    x = [p.clone() for p in start]
    y = [p.clone() for p in start]
    v = [torch.zeros_like(p) for p in start]
    lr_max, weight_sum, history = -1.0, 0.0, []
    for k in range(steps):
        g = _grads(y, k)
        lr_k = lr * ((k + 1) / warmup if k < warmup else 1.0)
        lr_max = max(lr_max, lr_k)
        weight = (k + 1) ** r * lr_max ** power
        weight_sum += weight
        c = weight / weight_sum
        for i in range(len(start)):
            if adam:
                v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
                u = g[i] / ((v[i] / (1 - beta2 ** (k + 1))).sqrt() + eps)
            else:
                u = g[i]
            z[i] = z[i] - lr_k * (u + decays[i] * y[i])
            x[i] = (1 - c) * x[i] + c * z[i]
            y[i] = beta * x[i] + (1 - beta) * z[i]
        history.append(([t.clone() for t in y], [t.clone() for t in x]))
    return history


CASES = [
    ("schedulefree_adamw", dict(lr=0.02, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, warmup_steps=10,
                                r=0.0, weight_lr_power=2.0)),
    ("schedulefree_adamw", dict(lr=0.05, betas=(0.95, 0.99), eps=1e-6, weight_decay=0.0, warmup_steps=0,
                                r=1.0, weight_lr_power=0.0)),
    ("schedulefree_adamw", dict(lr=0.01, betas=(0.8, 0.999), eps=1e-8, weight_decay=0.05, warmup_steps=60,
                                r=0.5, weight_lr_power=1.0)),  # warm-up longer than the run
    ("schedulefree_sgd", dict(lr=0.5, momentum=0.9, weight_decay=0.1, warmup_steps=10, r=0.0, weight_lr_power=2.0)),
    ("schedulefree_sgd", dict(lr=0.2, momentum=0.8, weight_decay=0.0, warmup_steps=0, r=1.0, weight_lr_power=0.0)),
]


@pytest.mark.parametrize("name,hp", CASES, ids=["adamw-warmup-decay", "adamw-r1", "adamw-long-warmup",
                                                "sgd-warmup-decay", "sgd-r1"])
def test_matches_the_authors_rule_in_float64(name, hp):
    start = _problem()
    params = [p.clone().requires_grad_() for p in start]
    wd = hp["weight_decay"]
    # As the module builds it (split_decay): decay on the matrices, none on the vectors.
    groups = [{"params": [params[0], params[2]], "weight_decay": wd}, {"params": [params[1], params[3]], "weight_decay": 0.0}]
    opt = optim.build(name, groups, **hp)
    history = _reference(name, hp, start, 50, decays=[wd, 0.0, wd, 0.0])
    worst_y = worst_x = 0.0
    for k, (y_ref, x_ref) in enumerate(history):
        opt.zero_grad()
        _loss(params, k).backward()
        opt.step()
        worst_y = max(worst_y, max((p.detach() - t).abs().max().item() for p, t in zip(params, y_ref)))
        if k % 7 == 0 or k == len(history) - 1:  # the evaluation point, now and then
            opt.eval()
            worst_x = max(worst_x, max((p.detach() - t).abs().max().item() for p, t in zip(params, x_ref)))
            opt.train()
    assert worst_y < 1e-6 and worst_x < 1e-6, (worst_y, worst_x)
    # Not a vacuous comparison: x and y are apart, and the run moved.
    y_end, x_end = history[-1]
    assert max((a - b).abs().max().item() for a, b in zip(y_end, x_end)) > 1e-3
    assert max((a - b).abs().max().item() for a, b in zip(x_end, start)) > 1e-2


def test_pytorch_optimizers_schedulefree_adamw_is_not_the_authors_rule():
    """Why the authors' package and not pytorch_optimizer.ScheduleFreeAdamW (4.1): it takes
    sqrt(v/(1 - beta2^t) + 1e-15) where the authors take sqrt(v/(1 - beta2^t)): with small
    gradients that is a different step."""
    from pytorch_optimizer import ScheduleFreeAdamW

    start = [torch.full((3,), 1.0, dtype=torch.float64)]
    hp = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, warmup_steps=0, r=0.0, weight_lr_power=2.0)
    ours = [start[0].clone().requires_grad_()]
    theirs = [start[0].clone().requires_grad_()]
    a = optim.build("schedulefree_adamw", ours, **hp)
    b = ScheduleFreeAdamW(theirs, **hp)
    for opt, p in ((a, ours[0]), (b, theirs[0])):
        for _ in range(5):
            p.grad = torch.full_like(p, 1e-9)
            opt.step()
    moved_ours = (start[0] - ours[0].detach()).abs().max().item()
    moved_theirs = (start[0] - theirs[0].detach()).abs().max().item()
    # |u| = 1e-9/(1e-9 + 1e-8) = 0.091 against 1e-9/(sqrt(1e-18 + 1e-15) + 1e-8) = 0.024
    assert moved_ours > 3 * moved_theirs


# ---- the registry tests of tests/test_optim.py, for the two new names ---------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry(name):
    _entry_metadata(name)
    _unknown_key(name)
    _lr_must_be_positive(name)
    assert optim.info(name).eval_point and needs_eval_point(name)
    for other in optim.names():
        if other not in NAMES:
            assert not optim.info(other).eval_point, other


def _bounded(name):
    for hp in optim.schema(name):
        if hp.type not in (float, int, tuple):
            continue
        bad = [hp.low if not hp.low_inclusive else hp.low - 0.5] if hp.low is not None else []
        if hp.high is not None and math.isfinite(hp.high):
            bad.append(hp.high if not hp.high_inclusive else hp.high + 0.5)
        bad.append(float("nan"))
        for value in bad:
            yield name, hp.name, (hp.default[0], value) if hp.type is tuple else value


@pytest.mark.parametrize("name,field,value", [c for n in NAMES for c in _bounded(n)])
def test_out_of_range_values_are_refused(name, field, value):
    _out_of_range(name, field, value)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    _state_dict_round_trip(name)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_build_and_descend(name):
    """tests/test_optim.py's check, with one difference for SGD: its first step is a plain SGD
    step at the authors' lr 1.0, which overshoots that test's quadratic (curvature up to 4);
    three steps later the loss is below the start (after 20 it is 3e-5 of it)."""
    params = _params(name=name)
    opt = optim.build(name, params)
    group = opt.param_groups[0]
    for key, value in optim.validate(name).items():
        assert group[key] == value, key
    assert group["train_mode"], "the factory starts the optimizer in training mode"
    before = _quadratic(params).item()
    for _ in range(1 if name == "schedulefree_adamw" else 4):
        _step(opt, params, _quadratic)
    assert _quadratic(params).item() < before


def test_sam_over_schedule_free():
    assert needs_eval_point("sam", {"base": "schedulefree_sgd"})
    assert not needs_eval_point("sam", {"base": "adam"})
    params = _params(name="schedulefree_adamw")
    opt = optim.build("sam", params, base="schedulefree_adamw", lr=0.01)
    assert switchable(opt) is opt.base_optimizer
    before = _quadratic(params).item()
    for _ in range(3):
        _step(opt, params, _quadratic)
    assert _quadratic(params).item() < before
    y = [p.detach().clone() for p in params]
    switchable(opt).eval()
    assert any(not torch.equal(a, p) for a, p in zip(y, params))


def test_check_schedule():
    with pytest.warns(ScheduleWarning, match="without a learning-rate schedule"):
        message = check_schedule("schedulefree_adamw", "cosine")
    assert "cosine" in message and "warmup_steps" in message
    with pytest.warns(ScheduleWarning):
        assert check_schedule("sam", "step", {"base": "schedulefree_sgd"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_schedule("schedulefree_adamw", "constant") is None
        assert check_schedule("schedulefree_sgd", None) is None
        assert check_schedule("adamw", "cosine") is None


# ---- EvalPoint in a real Trainer --------------------------------------------------------------------


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    make_dataset("mnist", tmp_path, monkeypatch)  # 60 training images, 20 test
    return tmp_path


def _dm(root, **kw):
    kw = {"val_size": 10, "batch_size": 16, "shuffle_seed": 0, **kw}
    return ClassificationDataModule("mnist", data_dir=str(root), **kw)


def _trainer(callbacks, **kw):
    kw = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
          "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
          "deterministic": True, **kw}
    if any(isinstance(c, ModelCheckpoint) for c in callbacks):
        kw["enable_checkpointing"] = True
    return L.Trainer(callbacks=callbacks, **kw)


def _bn_net_model(optimizer="schedulefree_adamw", **kw):
    """A small net with BatchNorm (and dropout, which must not draw random numbers at x)."""
    kw = {"net": "cifar_resnet", "net_args": {"width": 2}, "optimizer": optimizer, "lr": 0.01,
          "dropout": 0.3, **kw}
    return ClassifierModule(**kw)


def _state_of(opt_module):
    """(y, z) as plain copies: the weights (training point) and the optimizer's z, by name."""
    opt = opt_module.trainer.optimizers[0]
    by_id = {id(p): name for name, p in opt_module.named_parameters()}
    y = {name: p.detach().clone() for name, p in opt_module.named_parameters()}
    z = {by_id[id(p)]: opt.state[p]["z"].clone() for g in opt.param_groups for p in g["params"] if "z" in opt.state[p]}
    return y, z


def _x_from(y, z, beta):
    """The evaluation point from y = beta x + (1 - beta) z."""
    return {name: (y[name] - (1 - beta) * z[name]) / beta if name in z else y[name] for name in y}


def _accuracy(net, dm, split, weights=None):
    net = copy.deepcopy(net).eval()
    if weights is not None:
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(weights["net." + name])
    images, labels = split
    with torch.no_grad():
        logits = net(normalize(images, dm.info["mean"], dm.info["std"]))
    return (logits.argmax(1) == labels).double().mean().item()


class _Capture(Callback):
    """Copies of y and z at the start of the last validation (runs before EvalPoint: earlier in the list)."""

    def __init__(self):
        self.states = []

    def on_validation_start(self, trainer, pl_module):
        self.states.append(_state_of(pl_module))


def test_validation_reports_the_accuracy_at_the_average(real_data):
    L.seed_everything(0)
    dm = ClassificationDataModule("mnist", data_dir=str(real_data), batch_size=50, val_size=1000, train_size=1000,
                                  shuffle_seed=0)
    model = ClassifierModule(net="mlp", net_args={"hidden": [32]}, optimizer="schedulefree_sgd", lr=0.5)
    capture = _Capture()
    trainer = _trainer([capture, EvalPoint()], max_epochs=1)
    trainer.fit(model, dm)
    y, z = capture.states[-1]
    x = _x_from(y, z, beta=0.9)
    acc_x = _accuracy(model.net, dm, dm.val_set, x)
    acc_y = _accuracy(model.net, dm, dm.val_set, y)
    reported = trainer.callback_metrics["val/acc"].item()
    assert acc_x != acc_y
    assert reported == pytest.approx(acc_x, abs=1e-6)
    assert abs(reported - acc_y) > 1e-4
    # After fit the model stays at x.
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), x[name], rtol=0, atol=1e-6)


class _Record(Callback):
    """Every training batch (its bytes), the global random state before it, and the weights after."""

    def __init__(self):
        self.batches, self.rng, self.weights = [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append(batch[0].clone())
        self.rng.append(torch.get_rng_state().clone())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weights.append({n: p.detach().clone() for n, p in pl_module.named_parameters()})


def _assert_same_records(a, b):
    assert len(a.batches) == len(b.batches) > 0
    for i in range(len(a.batches)):
        assert torch.equal(a.batches[i], b.batches[i]), f"batch {i}"
        assert torch.equal(a.rng[i], b.rng[i]), f"global random state before batch {i}"
        for name in a.weights[i]:
            assert torch.equal(a.weights[i][name], b.weights[i][name]), f"{name} after batch {i}"


def test_evaluating_never_changes_the_training(tiny_mnist):
    """Validation every other step (at x, with BatchNorm recomputed, dropout in the net) against
    no validation at all: the same batches, the same global random state, the same weights."""
    runs = []
    for val_every in (2, None):
        L.seed_everything(0)
        record = _Record()
        kw = {"val_check_interval": val_every} if val_every else {"limit_val_batches": 0}
        _trainer([record, EvalPoint()], max_epochs=3, **kw).fit(_bn_net_model(), _dm(tiny_mnist))
        runs.append(record)
    _assert_same_records(*runs)


def test_batchnorm_recomputed_at_x_leaves_batches_and_random_state_alone(tiny_mnist):
    seen = {}

    class Probe(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step != 5:
                return
            eval_point = next(c for c in trainer.callbacks if isinstance(c, EvalPoint))
            loader = trainer.train_dataloader
            position = (loader.epoch, loader.pos)
            rng = torch.get_rng_state().clone()
            bn = pl_module.net.features[0][1]
            y_stats = bn.running_mean.clone()
            y = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
            expected_next = torch.rand(4)
            torch.set_rng_state(rng)
            eval_point.to_eval_point(trainer, pl_module)
            seen["x_stats"] = bn.running_mean.clone()
            seen["moved"] = any(not torch.equal(p, y[n]) for n, p in pl_module.named_parameters())
            eval_point.to_train_point(trainer, pl_module)
            seen["rng_kept"] = torch.equal(torch.get_rng_state(), rng)
            seen["next_rand"] = torch.equal(torch.rand(4), expected_next)
            torch.set_rng_state(rng)
            seen["position_kept"] = (loader.epoch, loader.pos) == position
            seen["y_back"] = all(torch.equal(p, y[n]) for n, p in pl_module.named_parameters())
            seen["stats_back"] = torch.equal(bn.running_mean, y_stats)
            seen["y_stats"] = y_stats

    L.seed_everything(0)
    probe, record = Probe(), _Record()
    _trainer([probe, record, EvalPoint()], max_epochs=3, limit_val_batches=0).fit(_bn_net_model(), _dm(tiny_mnist))
    assert seen["moved"] and not torch.equal(seen["x_stats"], seen["y_stats"])  # it did something
    assert seen["rng_kept"] and seen["next_rand"] and seen["position_kept"]
    assert seen["y_back"] and seen["stats_back"]
    # and the run is the one without the probe
    L.seed_everything(0)
    plain = _Record()
    _trainer([plain, EvalPoint()], max_epochs=3, limit_val_batches=0).fit(_bn_net_model(), _dm(tiny_mnist))
    _assert_same_records(record, plain)


@pytest.mark.parametrize("optimizer", NAMES)
def test_a_resumed_run_continues_exactly(tiny_mnist, tmp_path, optimizer):
    """Uninterrupted: 3 epochs of 4 steps, validated (at x) every epoch, a checkpoint every 6
    steps (mid-epoch 2). Resumed from the step-6 checkpoint: the same weights after every step."""
    def run(callbacks, ckpt_path=None):
        L.seed_everything(0)
        model = _bn_net_model(optimizer, lr=0.01 if optimizer == "schedulefree_adamw" else 0.1)
        record = _Record()
        trainer = _trainer([record, EvalPoint(), *callbacks], max_epochs=3)
        trainer.fit(model, _dm(tiny_mnist), ckpt_path=ckpt_path)
        return record, model

    saver = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="step{step}", every_n_train_steps=6,
                            save_top_k=-1, monitor=None, auto_insert_metric_name=False)
    whole, whole_model = run([saver])
    ckpt = tmp_path / "ckpts" / "step6.ckpt"
    assert ckpt.exists()
    resumed, resumed_model = run([], ckpt_path=str(ckpt))
    assert len(resumed.weights) == len(whole.weights) - 6
    for i, weights in enumerate(resumed.weights):
        for name, value in weights.items():
            torch.testing.assert_close(value, whole.weights[6 + i][name], rtol=0, atol=1e-6)
            assert torch.equal(value, whole.weights[6 + i][name]), f"{name} at step {7 + i}"
    # Both end at x with the same BatchNorm statistics.
    for (name, a), b in zip(whole_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoints_hold_the_evaluation_point(tiny_mnist, tmp_path):
    """best.ckpt: weights x = (y - (1-beta) z)/beta from the y and z it also holds, BatchNorm
    statistics recomputed at x (torch's update_bn on the seeded subset), the optimizer state in
    eval mode; `inference.load` (what classify uses) gives x."""
    from lit_opt import inference

    L.seed_everything(0)
    dm = _dm(tiny_mnist)
    # No dropout here: a checkpoint of a model built with dropout > 0 does not load (module.py
    # saves net_args with the dropout it added, and the rebuild refuses dropout given twice).
    model = _bn_net_model(lr=0.02, dropout=0.0)
    best = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/acc", mode="max")
    _trainer([EvalPoint(bn_batches=2, seed=3), best], max_epochs=3).fit(model, dm)
    ckpt = torch.load(best.best_model_path, weights_only=True)
    y = ckpt[CHECKPOINT_KEY]["train_point"]
    opt_state = ckpt["optimizer_states"][0]
    assert all(g["train_mode"] is False for g in opt_state["param_groups"])
    names = [n for n, _ in model.named_parameters()]
    # The optimizer's state is listed by parameter order across groups (split_decay's order).
    order = [i for g in opt_state["param_groups"] for i in g["params"]]
    params_in_order = [p for g in model.trainer.optimizers[0].param_groups for p in g["params"]]
    name_of = {id(p): n for n, p in model.named_parameters()}
    z = {name_of[id(p)]: opt_state["state"][i]["z"] for i, p in zip(order, params_in_order)}
    x = _x_from({n: y[n] for n in names}, z, beta=0.9)
    weights = ckpt["state_dict"]
    for name in names:
        torch.testing.assert_close(weights[name], x[name], rtol=0, atol=1e-6)
    assert any((weights[n] - y[n]).abs().max() > 1e-3 for n in names)

    # BatchNorm statistics at x, computed by torch's own update_bn over the documented subset:
    # torch.randperm(n, generator=Generator().manual_seed(seed))[:bn_batches*batch_size], in order.
    net = copy.deepcopy(model.net)
    net.load_state_dict({k[len("net."):]: v for k, v in weights.items() if k.startswith("net.")})
    images, _ = dm.train_set
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(3))[:2 * 16]
    batches = [normalize(images[idx[i:i + 16]], dm.info["mean"], dm.info["std"]) for i in range(0, len(idx), 16)]
    torch.optim.swa_utils.update_bn(batches, net)
    for name, buffer in net.named_buffers():
        if "running" in name:
            torch.testing.assert_close(weights["net." + name], buffer, rtol=1e-5, atol=1e-6)
            assert not torch.allclose(y["net." + name], buffer)

    loaded = inference.load(best.best_model_path)
    for name, p in loaded.named_parameters():
        torch.testing.assert_close(p.detach(), x[name], rtol=0, atol=1e-6)
