"""ClassifierModule: the L2 term, weight-decay groups, and the three training loops
(automatic, full-batch gd, SAM with a closure) checked against independent computations."""

from __future__ import annotations

import copy
import csv

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lit_opt.data import ClassificationDataModule, normalize
from lit_opt.errors import ConfigError
from lit_opt.module import ClassifierModule, check_precision
from tests.conftest import quiet_trainer
from tests.test_data import make_dataset


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    make_dataset("mnist", tmp_path, monkeypatch)  # 60 training images, 20 test
    return tmp_path


def _dm(root, **kw):
    kw = {"val_size": 10, "batch_size": 16, **kw}
    return ClassificationDataModule("mnist", data_dir=str(root), **kw)


def test_l2_penalty_is_lambda_times_squared_weights_without_biases():
    model = ClassifierModule(net="mlp", net_args={"hidden": [7]}, l2=0.01)
    weights = [p for name, p in model.net.named_parameters() if name.endswith("weight")]
    expected = 0.01 * sum((w.detach() ** 2).sum() for w in weights)
    assert model.l2_penalty().item() == pytest.approx(expected.item(), rel=1e-6)

    with_bias = ClassifierModule(net="mlp", net_args={"hidden": [7]}, l2=0.01, regularize_bias=True)
    with_bias.load_state_dict(model.state_dict())
    everything = 0.01 * sum((p.detach() ** 2).sum() for p in model.net.parameters())
    assert with_bias.l2_penalty().item() == pytest.approx(everything.item(), rel=1e-6)


def test_weight_decay_skips_biases_and_batchnorm():
    model = ClassifierModule(net="cifar_resnet", net_args={"width": 2}, optimizer="sgd", weight_decay=0.1,
                             data_info={"dataset": "cifar10", "input_shape": [3, 32, 32], "num_classes": 10,
                                        "class_names": list("abcdefghij"), "mean": [0.5] * 3, "std": [0.25] * 3})
    opt = model.configure_optimizers()
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    for name, p in model.net.named_parameters():
        expected = 0.0 if (p.ndim <= 1 or name.endswith(".bias")) else 0.1
        assert decay_of[id(p)] == expected, name


def _full_gradient_step(model, dm, lr, l2=0.0):
    """One plain SGD step on the mean cross-entropy over the whole training set plus
    l2 * (sum of squared weight matrices), computed independently of the module."""
    ref = copy.deepcopy(model.net)
    images, labels = dm.train_set
    x = normalize(images, dm.info["mean"], dm.info["std"])
    loss = F.cross_entropy(ref(x), labels)
    loss = loss + l2 * sum((p ** 2).sum() for name, p in ref.named_parameters() if name.endswith("weight"))
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    return [p.detach() - lr * g for p, g in zip(ref.parameters(), grads)]


def test_gd_takes_one_step_per_epoch_on_the_whole_training_set(tiny_mnist):
    dm = _dm(tiny_mnist, batch_size=16)  # 50 training images: batches of 16, 16, 16, 2
    dm.setup("fit")
    model = ClassifierModule(net="mlp", net_args={"hidden": [8]}, optimizer="gd", lr=0.5, l2=0.01,
                             data_info=dm.info)
    expected = _full_gradient_step(model, dm, 0.5, l2=0.01)
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 1
    for got, want in zip(model.net.parameters(), expected):
        torch.testing.assert_close(got.detach(), want, atol=1e-6, rtol=1e-5)


def test_gd_counts_one_step_per_epoch_over_several_epochs(tiny_mnist):
    dm = _dm(tiny_mnist)
    model = ClassifierModule(net="linear", optimizer="gd", data_info=dm.info)
    trainer = quiet_trainer(max_epochs=3, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3


def test_sam_counts_each_batch_once_and_updates_batchnorm_once(tiny_mnist):
    dm = _dm(tiny_mnist, batch_size=16)  # 4 batches per epoch
    model = ClassifierModule(net="cifar_resnet", net_args={"width": 2}, optimizer="sam",
                             optimizer_args={"base": "sgd", "rho": 0.05}, data_info=dm.info)
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 8
    bn = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(m.num_batches_tracked.item() == 8 for m in bn)


def test_sam_updates_batchnorm_statistics_from_the_first_pass_only(tiny_mnist):
    """After one SAM step on one batch, the running statistics are those of a single forward
    pass at the starting weights (the second pass, at the perturbed weights, must not count)."""
    dm = _dm(tiny_mnist, batch_size=50)  # one batch
    dm.setup("fit")
    model = ClassifierModule(net="cifar_resnet", net_args={"width": 2}, optimizer="sam",
                             optimizer_args={"base": "sgd", "rho": 0.5}, data_info=dm.info)
    ref = copy.deepcopy(model.net).train()
    ref(normalize(dm.train_set[0], dm.info["mean"], dm.info["std"]))  # one pass at w0 (any order)
    quiet_trainer(max_epochs=1, limit_val_batches=0).fit(model, datamodule=dm)
    got = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    want = [m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a.running_mean, b.running_mean, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.running_var, b.running_var, atol=1e-5, rtol=1e-4)


def test_sam_step_uses_the_gradient_at_the_perturbed_weights(tiny_mnist):
    """One SAM step through the Trainer equals the rule computed by hand (Foret et al. 2021)."""
    dm = _dm(tiny_mnist, batch_size=50)  # one batch = the whole training set, fixed order irrelevant
    dm.setup("fit")
    model = ClassifierModule(net="mlp", net_args={"hidden": [8]}, optimizer="sam",
                             optimizer_args={"base": "sgd", "momentum": 0.0, "rho": 0.1}, lr=0.3,
                             data_info=dm.info)
    ref = copy.deepcopy(model.net)
    images, labels = dm.train_set
    x = normalize(images, dm.info["mean"], dm.info["std"])
    params = list(ref.parameters())
    g = torch.autograd.grad(F.cross_entropy(ref(x), labels), params)
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(params, g):
            p.add_(0.1 * gi / (norm + 1e-12))
    g_adv = torch.autograd.grad(F.cross_entropy(ref(x), labels), params)
    start = [p.detach().clone() for p in model.net.parameters()]
    expected = [w - 0.3 * ga for w, ga in zip(start, g_adv)]

    quiet_trainer(max_epochs=1, limit_val_batches=0).fit(model, datamodule=dm)
    for got, want in zip(model.net.parameters(), expected):
        torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=1e-4)


def test_sam_refuses_fp16_but_allows_bf16():
    with pytest.raises(ConfigError, match="bf16"):
        check_precision("sam", "16-mixed")
    check_precision("sam", "bf16-mixed")
    check_precision("adam", "16-mixed")


@pytest.mark.parametrize("kwargs, field", [
    ({"lr": -1.0}, "lr"), ({"dropout": 1.0}, "dropout"), ({"l2": -1.0}, "l2"),
    ({"label_smoothing": 1.0}, "label_smoothing"), ({"early_stopping": 0}, "early_stopping"),
    ({"net": "vgg"}, "lenet5"), ({"optimizer": "adamz"}, "expectigrad"),
    ({"scheduler": "cyclic"}, "onecycle"), ({"scheduler": "step", "scheduler_args": {"gamma": 2}}, "gamma"),
    ({"optimizer_args": {"lr": 0.1}}, "model.lr"),
])
def test_bad_settings_fail_with_the_field_and_the_allowed_values(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ClassifierModule(**kwargs)


def test_schedulers_change_the_learning_rate_as_documented(tiny_mnist):
    dm = _dm(tiny_mnist)
    model = ClassifierModule(net="linear", optimizer="sgd", lr=0.1, scheduler="step",
                             scheduler_args={"step_size": 1, "gamma": 0.5}, data_info=dm.info)
    trainer = quiet_trainer(max_epochs=3, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, args", [("sam", {"base": "adam"}), ("adamp", {}), ("expectigrad", {})])
def test_seed002_optimizers_reach_96_percent_on_mnist_in_2_epochs(optimizer, args, real_data):
    """Seed 002's dense784 net, lr 1e-3, batch 128 (it reported 0.81, 0.69, 0.90 after 100 epochs)."""
    dm = ClassificationDataModule("mnist", data_dir=str(real_data), batch_size=128)
    model = ClassifierModule(net="dense784", optimizer=optimizer, lr=1e-3, optimizer_args=args,
                             data_info=dm.info)
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    result = trainer.test(model, datamodule=dm, verbose=False)[0]
    print(f"{optimizer}: test accuracy {result['test/acc']:.4f}")
    assert result["test/acc"] >= 0.96


class _RecordBatches(Callback):
    """Before each step, the batch's loss (CE + l2 * squared weights) and correct count,
    computed from a copy of the net (no dropout: the forward pass is deterministic)."""

    def __init__(self, l2: float):
        self.l2, self.steps = l2, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        x, y = batch
        with torch.no_grad():
            logits = pl_module.net(x)
            ce = F.cross_entropy(logits, y)
            penalty = sum((p ** 2).sum() for n, p in pl_module.net.named_parameters() if n.endswith("weight"))
        self.steps.append({"ce": ce.item(), "loss": (ce + self.l2 * penalty).item(), "n": len(y),
                           "correct": int((logits.argmax(1) == y).sum())})


def _stream(run_dir):
    """What a fit run adds for its logs: the epoch summary, the live stream (which writes the
    step losses to the logger) and the divergence guard (whose norms the stream reads)."""
    from lit_opt.callbacks import DivergenceGuard, EpochSummary
    from lit_opt.diagnostics import default_sources
    from lit_opt.stream import LiveStream

    summary = EpochSummary()
    return [summary, LiveStream(default_sources(), [], summary=summary, run_dir=run_dir), DivergenceGuard()]


def test_logged_training_metrics_equal_the_batches_they_summarize(tiny_mnist, tmp_path):
    """train/loss_epoch, train/acc, train/ce and train/l2 are sample-weighted means over the
    epoch's batches; train/loss_step in metrics.csv is the loss of the step it names, written
    every log_every_n_steps steps."""
    from lightning.pytorch.loggers import CSVLogger

    dm = _dm(tiny_mnist, batch_size=8)  # 50 training images: 6 batches of 8 and one of 2
    model = ClassifierModule(net="mlp", net_args={"hidden": [8]}, optimizer="sgd", lr=0.1, l2=0.01,
                             data_info=dm.info)
    record = _RecordBatches(l2=0.01)
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0, callbacks=[record, *_stream(tmp_path)],
                            log_every_n_steps=3, logger=CSVLogger(tmp_path / "logs", name="", version=""))
    trainer.fit(model, datamodule=dm)

    last_epoch = record.steps[7:]  # 7 batches per epoch
    n = sum(s["n"] for s in last_epoch)
    assert n == 50
    m = trainer.callback_metrics
    assert m["train/loss_epoch"].item() == pytest.approx(sum(s["loss"] * s["n"] for s in last_epoch) / n, rel=1e-5)
    assert m["train/ce"].item() == pytest.approx(sum(s["ce"] * s["n"] for s in last_epoch) / n, rel=1e-5)
    assert m["train/l2"].item() == pytest.approx(sum((s["loss"] - s["ce"]) * s["n"] for s in last_epoch) / n,
                                                 rel=1e-4)
    assert m["train/acc"].item() == pytest.approx(sum(s["correct"] for s in last_epoch) / n, abs=1e-6)

    rows = [r for r in csv.DictReader((tmp_path / "logs" / "metrics.csv").open()) if r.get("train/loss_step")]
    # Lightning writes step metrics after steps 3, 6, 9, 12 (global steps 2, 5, 8, 11).
    assert [int(r["step"]) for r in rows] == [2, 5, 8, 11]
    for r in rows:
        assert float(r["train/loss_step"]) == pytest.approx(record.steps[int(r["step"])]["loss"], rel=1e-5)


class _StopAfterBatch(Callback):
    """What Lightning's Timer does at --trainer.max_time: stop the run after a batch."""

    def __init__(self, batch: int):
        self.batch = batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.batch:
            trainer.should_stop = True


def test_a_run_stopped_between_log_steps_writes_the_loss_of_its_last_step(tiny_mnist, tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    dm = _dm(tiny_mnist, batch_size=8)
    model = ClassifierModule(net="mlp", net_args={"hidden": [8]}, optimizer="sgd", lr=0.1, data_info=dm.info)
    record = _RecordBatches(l2=0.0)
    trainer = quiet_trainer(max_epochs=3, limit_val_batches=0, log_every_n_steps=3,
                            callbacks=[record, _StopAfterBatch(4), *_stream(tmp_path)],
                            logger=CSVLogger(tmp_path / "logs", name="", version=""))
    trainer.fit(model, datamodule=dm)
    rows = [r for r in csv.DictReader((tmp_path / "logs" / "metrics.csv").open()) if r.get("train/loss_step")]
    assert [int(r["step"]) for r in rows] == [2, 4]  # step 4: the stop, between log steps
    for r in rows:
        assert float(r["train/loss_step"]) == pytest.approx(record.steps[int(r["step"])]["loss"], rel=1e-5)


class _RecordD(Callback):
    def __init__(self):
        self.d = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.d.append(trainer.optimizers[0].param_groups[0]["d"])


def test_prodigy_step_size_d_is_logged_per_step_and_per_epoch(tiny_mnist, tmp_path):
    """train/d in metrics.csv is param_groups[0]["d"] after the step it names, on the steps the
    logger writes; EpochSummary's row (epochs.csv) has it at the epoch's end. Optimizers without
    an estimated step size log neither (Adafactor's "d", a clipping threshold, included)."""
    from lightning.pytorch.loggers import CSVLogger

    dm = _dm(tiny_mnist, batch_size=8)  # 7 batches per epoch
    for optimizer in ("prodigy", "adafactor"):
        model = ClassifierModule(net="mlp", net_args={"hidden": [8]}, optimizer=optimizer, data_info=dm.info)
        record = _RecordD() if optimizer == "prodigy" else Callback()
        logs = tmp_path / optimizer
        stream = _stream(logs)
        summary = stream[0]
        trainer = quiet_trainer(max_epochs=2, limit_val_batches=0, log_every_n_steps=3,
                                callbacks=[record, *stream], logger=CSVLogger(logs, name="", version=""))
        trainer.fit(model, datamodule=dm)
        rows = list(csv.DictReader((logs / "metrics.csv").open()))
        if optimizer == "adafactor":
            assert "train/d" not in rows[0] and all("train/d" not in r for r in summary.rows)
            continue
        logged = [r for r in rows if r.get("train/d")]
        assert [int(r["step"]) for r in logged] == [2, 5, 8, 11]
        for r in logged:
            assert float(r["train/d"]) == pytest.approx(record.d[int(r["step"])], rel=1e-6)
        assert record.d[-1] > 1e-6  # d grew from d0
        assert [row["train/d"] for row in summary.rows] == [record.d[6], record.d[13]]


def test_ademamix_auto_warmups_are_the_runs_total_steps(tiny_mnist):
    dm = _dm(tiny_mnist, batch_size=8)  # 7 batches per epoch
    model = ClassifierModule(net="mlp", net_args={"hidden": [8]}, optimizer="ademamix",
                             optimizer_args={"alpha_warmup": "auto", "beta3_warmup": 5}, data_info=dm.info)
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    group = trainer.optimizers[0].param_groups[0]
    assert trainer.estimated_stepping_batches == 14
    assert (group["alpha_warmup"], group["beta3_warmup"]) == (14, 5)
    assert model.hparams.optimizer_args == {"alpha_warmup": "auto", "beta3_warmup": 5}  # as given

    endless = ClassifierModule(net="mlp", net_args={"hidden": [8]}, optimizer="ademamix",
                               optimizer_args={"beta3_warmup": "auto"}, data_info=dm.info)
    with pytest.raises(ConfigError, match="beta3_warmup 'auto' is the run's total number of steps"):
        quiet_trainer(max_epochs=-1, limit_val_batches=0).fit(endless, datamodule=dm)


def test_muon_is_refused_when_the_module_is_made():
    for kwargs in (dict(optimizer="muon"), dict(optimizer="sam", optimizer_args={"base": "muon"})):
        with pytest.raises(ConfigError, match="this net has none"):
            ClassifierModule(net="linear", **kwargs)
    ClassifierModule(net="mlp", net_args={"hidden": [8, 8]}, optimizer="muon")
