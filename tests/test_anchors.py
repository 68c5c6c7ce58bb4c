"""lit_opt's anchor configs compute what the plain-PyTorch anchor scripts compute: given the
same initial weights and the same batches, in float32 on the CPU, the losses of every step
agree within 1e-4. The speed of the two is compared on a GPU by benchmarks/anchor_speed.py; this
checks that the comparison is of the same recipe."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20


def test_mnist_fast_config_computes_the_anchor_scripts_losses(real_data, tmp_path):
    """20 steps of batch 256 (5,120 MNIST images, one epoch, so that the one-cycle schedule
    spans the same 20 steps in both): lit_opt's steps.csv against the anchor's loop, started
    from lit_opt's init.pt and fed lit_opt's epoch-0 order of its training images."""
    from lit_opt.data import ClassificationDataModule
    from lit_opt.jobs import prepare_fit

    from benchmarks.anchors import train_mnist_fast as anchor
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


def _small_cifar(root: Path, monkeypatch, n_train: int = 256, n_test: int = 64) -> None:
    """CIFAR-10 in torchvision's format whose classes differ in colour (so 20 steps learn)."""
    import numpy as np
    import torchvision.datasets as tvd

    from tests.helpers import write_cifar

    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 10, size=n)
        images = rng.integers(0, 160, size=(n, 3, 32, 32)) + (labels * 9)[:, None, None, None]
        return images.astype(np.uint8), labels

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    md5 = write_cifar(root, "cifar10", split(n_train), split(n_test), names)
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[n, md5[n]] for n, _ in tvd.CIFAR10.train_list])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [[n, md5[n]] for n, _ in tvd.CIFAR10.test_list])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": md5[tvd.CIFAR10.meta["filename"]]})


def test_airbench94_config_computes_the_anchor_scripts_losses(tmp_path, monkeypatch):
    """20 steps of airbench94 scaled down (widths 8-16-16, batch 32, 256 images: 8 full batches
    an epoch, so 3 epochs with the whitening bias frozen after the first) through lit_opt's
    config and through the anchor's loop, from lit_opt's init.pt (whitened filters and all),
    on the batches lit_opt's loader made (shuffled, shifted, alternately flipped): the same
    summed-vs-mean losses, lookahead at steps 5-20, warm-up and decay of the rate."""
    from lit_opt.data import ClassificationDataModule
    from lit_opt.jobs import prepare_fit

    from benchmarks.anchors import airbench94 as anchor
    batch = 32
    recipe = anchor.Recipe(batch_size=batch, widths=(8, 16, 16), whiten_bias_epochs=1)
    _small_cifar(tmp_path / "data", monkeypatch)
    config = yaml.safe_load((ROOT / "configs/anchors/airbench94.yaml").read_text())
    config["data"].update(name="cifar10", data_dir=str(tmp_path / "data"), batch_size=batch, shuffle_seed=3,
                          download=False)
    config["model"].update(lr=config["model"]["lr"] * batch / 1024, channels_last=False,
                           net_args={"widths": [8, 16, 16], "whiten_bias_epochs": 1})
    config["trainer"].update(max_steps=STEPS, max_epochs=3, precision="32-true", accelerator="cpu",
                             enable_progress_bar=False)
    config["run"] = {"root": str(tmp_path / "runs"), "test": False}
    job = prepare_fit(config)
    job.run()
    with (job.run_dir / "steps.csv").open() as f:
        lit_losses = [float(r["train/loss"]) for r in csv.DictReader(f)]
    assert len(lit_losses) == STEPS

    # lit_opt's own batches, epoch by epoch, as its loader served them (uint8, augmented).
    dm = ClassificationDataModule(**config["data"])
    dm.setup("fit")
    loader = dm.train_dataloader()
    epochs = [[(anchor.normalized(x), y) for x, y in loader] for _ in range(3)]
    assert [len(e) for e in epochs] == [8, 8, 8]  # drop_last: 256 // 32, no partial batch
    net = anchor.make_net(recipe)
    init = torch.load(job.run_dir / "init.pt", weights_only=True)["state_dict"]
    net.load_state_dict({k[len("net."):]: v for k, v in init.items()})  # the same names, layer for layer
    losses = []
    anchor.train(net, lambda e: epochs[e], STEPS, recipe, on_step=lambda i, loss: losses.append(float(loss) / batch))

    assert len(losses) == STEPS
    assert min(losses[-5:]) < losses[0] - 0.05  # it learned (slowly: logits scaled by 1/9, labels smoothed)
    for step, (ours, theirs) in enumerate(zip(lit_losses, losses), start=1):
        assert ours == pytest.approx(theirs, abs=1e-4), f"step {step}: lit_opt {ours}, anchor {theirs}"
    # The lookahead's last move made the weights the slow copy; both nets end the same.
    final = torch.load(job.run_dir / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in net.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(final[f"net.{key}"], value, atol=1e-4), key


def _small_airbench_config(tmp_path: Path, name: str) -> dict:
    config = yaml.safe_load((ROOT / "configs/anchors/airbench94.yaml").read_text())
    config["data"].update(name="cifar10", data_dir=str(tmp_path / "data"), batch_size=32, shuffle_seed=3,
                          download=False)
    config["model"].update(lr=config["model"]["lr"] * 32 / 1024, net_args={"widths": [8, 16, 16], "whiten_bias_epochs": 1})
    config["trainer"].update(max_steps=STEPS, max_epochs=3, precision="32-true", accelerator="cpu",
                             enable_progress_bar=False)
    config["run"] = {"root": str(tmp_path / "runs"), "test": False, "name": name}
    return config


def test_an_airbench_run_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """Stopped at step 11 (mid-epoch 1, after two lookahead moves and the whitening bias's last
    epoch) and resumed from last.ckpt: the lookahead's slow copy, the alternating flips, the
    warm-up schedule and the full-batch epochs all continue, and the run ends bit-identical
    to one never stopped."""
    from lit_opt.cli import main

    _small_cifar(tmp_path / "data", monkeypatch)
    whole = _small_airbench_config(tmp_path, "whole")
    (tmp_path / "whole.yaml").write_text(yaml.safe_dump(whole))
    assert main(["fit", "--config", str(tmp_path / "whole.yaml")]) == 0
    stopped = _small_airbench_config(tmp_path, "stopped")
    stopped["trainer"]["callbacks"].append({"class_path": "tests.helpers.StopAtStep", "init_args": {"step": 11}})
    (tmp_path / "stopped.yaml").write_text(yaml.safe_dump(stopped))
    assert main(["fit", "--config", str(tmp_path / "stopped.yaml")]) == 130
    run = tmp_path / "runs" / "stopped"
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 11
    assert main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "last.ckpt")]) == 0
    a = torch.load(tmp_path / "runs" / "whole" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(run / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_test_time_augmentation_averages_the_anchors_views():
    """model.tta 1 is the mean of the image's and its mirror's logits; level 2 is what the
    anchor script's own test-time augmentation computes."""
    from lit_opt import nets
    from lit_opt.tta import tta_logits

    from benchmarks.anchors import airbench94 as anchor
    torch.manual_seed(0)
    net = nets.build("airbench", (3, 32, 32), 10, widths=[8, 16, 16]).eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tta_logits(net, x, 1), (net(x) + net(x.flip(-1))) / 2)
        torch.testing.assert_close(tta_logits(net, x, 2), anchor.tta_logits(net, x))
        assert not torch.allclose(tta_logits(net, x, 2), net(x))


def test_the_airbench_augmentation_shifts_with_reflection_and_flips_each_image_every_other_epoch():
    """Against torch's own reflect padding: every augmented image is a crop of the padded
    image, flipped or not; with "alternate", an image flipped in epoch 0 is not in epoch 1."""
    import torch.nn.functional as F

    from lit_opt.augment import Augmentation
    from lit_opt.data import ShuffledBatches

    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(64)
    aug = Augmentation.from_args({"translate": 2, "pad_mode": "reflect", "flip": "alternate"})
    batches = ShuffledBatches(images, labels, 16, seed=5, augment=True, augmentation=aug)
    flipped = {}
    for epoch in range(2):
        for x, y in batches:
            for img, i in zip(x, y.tolist()):
                padded = F.pad(images[i:i + 1].float(), (2, 2, 2, 2), mode="reflect")[0]
                views = {(dy, dx, f): (padded[:, dy:dy + 8, dx:dx + 8].flip(-1) if f else padded[:, dy:dy + 8, dx:dx + 8])
                         for dy in range(5) for dx in range(5) for f in (False, True)}
                found = [k for k, v in views.items() if torch.equal(v, img.float())]
                assert found, f"image {i} epoch {epoch} is no shifted view of the image"
                flipped.setdefault(i, []).append(found[0][2])
    symmetric = {i for i in range(64) if torch.equal(images[i], images[i].flip(-1))}
    assert all(f[0] != f[1] for i, f in flipped.items() if i not in symmetric)  # each way once in two epochs
    assert 16 < sum(f[0] for f in flipped.values()) < 48  # a random half in epoch 0


def test_drop_last_serves_full_batches_only():
    from lit_opt.data import ShuffledBatches

    images, labels = torch.zeros(70, 1, 4, 4, dtype=torch.uint8), torch.arange(70)
    full = ShuffledBatches(images, labels, 32, seed=0, drop_last=True)
    assert len(full) == 2 and [len(y) for _, y in full] == [32, 32]
    assert [len(y) for _, y in ShuffledBatches(images, labels, 32, seed=0)] == [32, 32, 6]


def test_augment_args_are_checked_naming_the_option_and_what_is_allowed(tmp_path):
    from lit_opt.data import ClassificationDataModule
    from lit_opt.errors import ConfigError

    for args, message in (({"flip": "sometimes"}, "flip must be one of random, alternate, none"),
                          ({"pad_mode": "wrap"}, "pad_mode must be one of zeros, reflect"),
                          ({"translate": -1}, "translate must be an integer >= 0"),
                          ({"shift": 2}, "has no option 'shift'")):
        with pytest.raises(ConfigError, match=message):
            ClassificationDataModule("cifar10", data_dir=str(tmp_path), augment_args=args)
    dm = ClassificationDataModule("cifar10", data_dir=str(tmp_path), augment=True, batch_size=4,
                                  augment_args={"translate": 40, "pad_mode": "reflect"})
    dm.train_set = (torch.zeros(8, 3, 32, 32, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ConfigError, match="must be smaller than the images"):
        dm.train_dataloader()


def test_airbench_refuses_images_its_pools_cannot_take():
    from lit_opt import nets
    from lit_opt.errors import ConfigError

    assert nets.build("airbench", (1, 28, 28), 10) is not None  # 28x28 leaves one pixel too
    with pytest.raises(ConfigError, match=r"made for 32x32 images.*\(3, 64, 64\)"):
        nets.build("airbench", (3, 64, 64), 10)
