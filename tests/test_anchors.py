"""lit_opt's anchor configs compute what the plain-PyTorch anchor scripts compute: given the
same initial weights and the same batches, in float32 on the CPU, the losses of every step
agree within 1e-4. The speed of the two is compared on a GPU by benchmarks/anchors.py; this
checks that the comparison is of the same recipe."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20


def _anchor(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "anchors" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mnist_fast_config_computes_the_anchor_scripts_losses(real_data, tmp_path):
    """20 steps of batch 256 (5,120 MNIST images, one epoch, so that the one-cycle schedule
    spans the same 20 steps in both): lit_opt's steps.csv against the anchor's loop, started
    from lit_opt's init.pt and fed lit_opt's epoch-0 order of its training images."""
    from lit_opt.data import ClassificationDataModule
    from lit_opt.jobs import prepare_fit

    anchor = _anchor("train_mnist_fast")
    config = yaml.safe_load((ROOT / "configs/anchors/mnist_fast.yaml").read_text())
    config["data"].update(data_dir=str(real_data), train_size=STEPS * anchor.BATCH_SIZE, shuffle_seed=7)
    config["run"] = {"root": str(tmp_path), "test": False}
    config["trainer"].update(accelerator="cpu", enable_progress_bar=False)
    # The anchor's layout. Channels-last convolutions (lit_opt's default for conv nets) add in
    # another order: 1e-6 apart at step 4, and the loss spike of the warm-up (2.1 -> 3.0 at
    # step 6) grows that to 5e-4 by step 9; in the plain layout every step agrees to 1e-6.
    config["model"]["channels_last"] = False
    job = prepare_fit(config)
    job.run()
    with (job.run_dir / "steps.csv").open() as f:
        rows = list(csv.DictReader(f))
    lit_losses = [float(r["train/loss"]) for r in rows]
    assert len(lit_losses) == STEPS
    # The schedule is torch's OneCycleLR as the anchor builds it: momentum (beta1) not cycled.
    probe = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=anchor.LR, betas=anchor.BETAS)
    reference = torch.optim.lr_scheduler.OneCycleLR(probe, max_lr=anchor.LR, total_steps=STEPS, cycle_momentum=False)
    lrs = []
    for _ in range(STEPS):
        lrs.append(probe.param_groups[0]["lr"])
        probe.step()
        reference.step()
    assert [float(r["train/lr"]) for r in rows] == pytest.approx(lrs, rel=1e-6)
    assert {float(r["train/momentum"]) for r in rows} == {anchor.BETAS[0]}

    # The same training images, in the order lit_opt's batcher served them in epoch 0.
    dm = ClassificationDataModule(**{k: v for k, v in config["data"].items()})
    dm.setup("fit")
    images, labels = dm.train_set
    assert len(labels) == STEPS * anchor.BATCH_SIZE  # val_size 0: no image held out
    order = dm.train_dataloader().permutation(0)
    net = anchor.Net()
    init = torch.load(job.run_dir / "init.pt", weights_only=True)["state_dict"]
    lit_params = [v for k, v in init.items() if k.startswith("net.")]
    anchor_params = list(net.state_dict().values())
    assert [p.shape for p in lit_params] == [p.shape for p in anchor_params]  # the same net, layer for layer
    net.load_state_dict(dict(zip(net.state_dict(), lit_params)))
    losses = []
    anchor.train(net, anchor.normalized(images[order]), labels[order], on_step=lambda i, loss: losses.append(float(loss)))

    assert len(losses) == STEPS
    assert losses[-1] < losses[0] - 1.0  # it learned: the comparison is not of two stuck runs
    for step, (ours, theirs) in enumerate(zip(lit_losses, losses), start=1):
        assert ours == pytest.approx(theirs, abs=1e-4), f"step {step}: lit_opt {ours}, anchor {theirs}"


def test_the_anchor_config_trains_on_every_image_with_no_validation_pass(real_data, tmp_path):
    """data.val_size 0 is the anchors' setting: no image held out, no validation pass, no
    best.ckpt (nothing to pick it by), the test set scored on last.ckpt afterwards."""
    from lit_opt.jobs import prepare_fit

    config = yaml.safe_load((ROOT / "configs/anchors/mnist_fast.yaml").read_text())
    config["data"].update(data_dir=str(real_data), train_size=1024, test_size=500)
    config["run"] = {"root": str(tmp_path)}
    config["trainer"].update(accelerator="cpu", enable_progress_bar=False)
    job = prepare_fit(config)
    summary = job.run()
    assert job.trainer.num_val_batches == [] or sum(job.trainer.num_val_batches) == 0
    assert not (job.run_dir / "best.ckpt").exists() and (job.run_dir / "last.ckpt").exists()
    assert summary["tested"] == "last.ckpt" and 0.0 <= summary["test/acc"] <= 1.0
    with (job.run_dir / "epochs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["val/acc"] in ("", None)


def test_val_size_0_refuses_early_stopping_which_has_nothing_to_watch(tmp_path):
    from lit_opt.errors import ConfigError
    from lit_opt.jobs import prepare_fit

    with pytest.raises(ConfigError, match="data.val_size 0"):
        prepare_fit({"model": {"early_stopping": 3}, "data": {"val_size": 0, "data_dir": str(tmp_path)},
                     "run": {"root": str(tmp_path)}})
    assert list(tmp_path.iterdir()) == []  # no run folder left behind
