"""Steering a run while it trains (lit_opt/steering.py): a learning-rate, momentum or weight
decay change at step s applies at step s live, on resume and on replay from the run's
config.yaml; with a schedule it multiplies the scheduled rate; every optimizer step is
steered the same way and the groups are left as the schedule set them."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from lit_opt.cli import main
from lit_opt.errors import ConfigError
from lit_opt.jobs import prepare_fit
from lit_opt.steering import Steering, check_change, merge
from tests.helpers import StopAtStep

SMALL = ["--data.train_size", "600", "--data.val_size", "200", "--data.batch_size", "100",
         "--model.net_args", "{hidden: shallow}", "--run.test", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.accelerator", "cpu", "--model.optimizer", "momentum", "--model.lr", "0.05"]


def _steps(run):
    with (run / "steps.csv").open() as f:
        return list(csv.DictReader(f))


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


class SteerAt(Callback):
    """The app's Apply pressed while the run trains: after the batch that ends at `step`."""

    def __init__(self, job, step, **values):
        self.job, self.step, self.values = job, step, values

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            self.job.steer(**self.values)


def test_a_change_made_while_training_applies_at_its_step_live_on_replay_and_on_resume(real_data, tmp_path):
    base = [*SMALL, "--data.data_dir", str(real_data), "--trainer.max_epochs", "2", "--run.root", str(tmp_path)]
    job = prepare_fit([*base, "--run.name", "live"])
    job.trainer.callbacks.insert(0, SteerAt(job, 4, lr_factor=0.1, momentum=0.5))
    job.run()
    live = tmp_path / "live"
    # recorded with its step in the run's config.yaml
    assert yaml.safe_load((live / "config.yaml").read_text())["run"]["steering"] == [
        {"step": 4, "lr_factor": 0.1, "momentum": 0.5}]
    lrs = [float(r["train/lr"]) for r in _steps(live)]
    assert lrs == pytest.approx([0.05] * 4 + [0.005] * 8)  # the rate each step used

    # replay: the run's own config repeats exactly what the app did
    config = yaml.safe_load((live / "config.yaml").read_text())
    config["run"]["name"] = "replay"
    (tmp_path / "replay.yaml").write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(tmp_path / "replay.yaml")]) == 0
    _same(_weights(live / "last.ckpt"), _weights(tmp_path / "replay" / "last.ckpt"))

    # resume: stopped before the change, resumed from last.ckpt, the change still lands at step 4
    config["run"]["name"] = "resumed"
    (tmp_path / "resumed.yaml").write_text(yaml.safe_dump(config))
    stop = {"class_path": "tests.helpers.StopAtStep", "init_args": {"step": 2}}
    assert main(["fit", "--config", str(tmp_path / "resumed.yaml"), "--trainer.callbacks", yaml.safe_dump([stop])]) == 130  # stopped
    resumed = tmp_path / "resumed"  # its config names the test's callback: named here, as a user would
    assert main(["fit", "--config", str(resumed / "config.yaml"), "--ckpt_path", str(resumed / "last.ckpt")]) == 0
    _same(_weights(live / "last.ckpt"), _weights(resumed / "last.ckpt"))

    # and it did something: without the change the run ends elsewhere
    assert main(["fit", *base, "--run.name", "plain"]) == 0
    plain = _weights(tmp_path / "plain" / "last.ckpt")
    assert not torch.equal(plain["net.1.weight"], _weights(live / "last.ckpt")["net.1.weight"])


def test_with_onecycle_a_change_multiplies_the_scheduled_rate(real_data, tmp_path):
    base = ["fit", *SMALL, "--data.data_dir", str(real_data), "--trainer.max_epochs", "2", "--run.root",
            str(tmp_path), "--model.scheduler", "onecycle"]
    assert main([*base, "--run.name", "plain"]) == 0
    assert main([*base, "--run.name", "steered", "--run.steering", "[{step: 5, lr_factor: 0.5}]"]) == 0
    plain = [float(r["train/lr"]) for r in _steps(tmp_path / "plain")]
    steered = [float(r["train/lr"]) for r in _steps(tmp_path / "steered")]
    assert len(set(plain)) > 5  # the schedule moves the rate every step
    assert [s / p for s, p in zip(steered, plain)] == pytest.approx([1.0] * 5 + [0.5] * 7)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "sam"])
def test_every_step_is_steered_and_the_groups_are_left_as_they_were(name):
    """One step with steered values equals one step of an optimizer built with those values;
    afterwards the groups hold their own values again (what a schedule set stays set)."""
    from lit_opt import optim

    torch.manual_seed(0)
    w0 = torch.randn(5, 3)
    x, y = torch.randn(8, 3), torch.randn(8, 5)

    def one_step(hp, steer=None):
        w = torch.nn.Parameter(w0.clone())
        opt = optim.build(name, [{"params": [w], "weight_decay": hp.pop("weight_decay")}], **hp)
        steering = None
        if steer is not None:
            steering = Steering([{"step": 0, **steer}])
            steering._trainer = type("T", (), {"global_step": 0})()
            opt.register_step_pre_hook(steering._before_step)
            opt.register_step_post_hook(steering._after_step)
        for _ in range(2):  # the second step uses the momentum buffer the first one made
            def closure():
                opt.zero_grad()
                loss = ((x @ w.T - y) ** 2).mean()
                loss.backward()
                return loss
            closure()
            opt.step(closure) if name == "sam" else opt.step()
        return w.detach(), opt.param_groups[0]

    given = {"lr": 0.1, "weight_decay": 0.01}
    mom = {"momentum": 0.9} if name in ("momentum", "sam") else {}
    w_steered, group = one_step({**given, **mom}, {"lr_factor": 0.5, "weight_decay": 0.1,
                                                   **({"momentum": 0.5} if name != "sgd" else {})})
    expected = {"lr": 0.05, "weight_decay": 0.1, **({"momentum": 0.5} if mom else {})}
    if name == "adam":
        expected["betas"] = (0.5, 0.999)
    w_built, _ = one_step(expected)
    torch.testing.assert_close(w_steered, w_built, rtol=0, atol=0)
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.01  # put back after the step
    if name == "adam":
        assert tuple(group["betas"]) == (0.9, 0.999)


def test_bad_changes_are_refused_naming_what_is_allowed(real_data, tmp_path, capsys):
    for bad, says in [({"step": -1, "lr_factor": 2}, "whole number >= 0"), ({"step": 1, "lr": 0.1}, "unknown key"),
                      ({"step": 1, "lr_factor": 0}, "must be > 0"), ({"step": 1, "momentum": 1.0}, "[0, 1)"),
                      ({"step": 1}, "sets nothing")]:
        with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace(")", r"\)").replace("(", r"\(")):
            check_change(bad)
    assert main(["fit", *SMALL, "--data.data_dir", str(real_data), "--run.root", str(tmp_path),
                 "--run.steering", "[{step: 3, lr: 0.1}]"]) == 2
    assert "unknown key(s) lr" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before a run folder was made


def test_later_records_win_and_changes_stay_in_step_order():
    assert merge([{"step": 5, "lr_factor": 0.5}], [{"step": 2, "momentum": 0.1}, {"step": 5, "lr_factor": 0.2}]) == [
        {"step": 2, "momentum": 0.1}, {"step": 5, "lr_factor": 0.2}]
    s = Steering([{"step": 2, "lr_factor": 0.5}, {"step": 6, "momentum": 0.3}])
    assert [s.lr_factor_at(k) for k in (0, 2, 6)] == [1.0, 0.5, 0.5] and s.values_at(6)["momentum"] == 0.3
