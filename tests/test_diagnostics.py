"""Per-layer diagnostics (lit_opt/diagnostics/layer_updates.py): the logged update is the
weights' actual change over the step for every kind of step, histograms count every
parameter and match numpy's, and measuring changes nothing about the run."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lit_opt.jobs import prepare_fit
from lit_opt.run_files import read_histograms


def _config(real_data, root, name, optimizer, every=1, histograms_every=1, epochs=2):
    return {"seed_everything": 0,
            "trainer": {"max_epochs": epochs, "accelerator": "cpu", "enable_progress_bar": False,
                        "enable_model_summary": False},
            "model": {"net": "mlp", "net_args": {"hidden": "shallow"}, "optimizer": optimizer,
                      "weight_decay": 0.01 if optimizer != "sam" else None},
            "data": {"name": "mnist", "data_dir": str(real_data), "train_size": 300, "val_size": 100,
                     "batch_size": 100},
            "diagnostics": {"every": every, "histograms_every": histograms_every},
            "run": {"root": str(root), "name": name, "test": False}}


class UpdatesByHand(Callback):
    """Each optimizer step's change of every layer's weights, measured from outside: the
    weights as a batch starts against the weights as it ends, in the batches whose global
    step moved (gd steps once, in an epoch's last batch)."""

    def __init__(self):
        self.updates: dict[int, dict[str, float]] = {}  # batches trained (1-based) -> layer -> norm

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step = trainer.global_step
        self._before = {n: p.detach().clone() for n, p in pl_module.net.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self._step:
            return
        layers: dict[str, float] = {}
        for n, p in pl_module.net.named_parameters():  # "1.weight" and "1.bias": module "1"
            module = n.rsplit(".", 1)[0]
            layers[module] = layers.get(module, 0.0) + float((p.detach() - self._before[n]).double().square().sum())
        batches = trainer.current_epoch * trainer.num_training_batches + batch_idx + 1
        self.updates[batches] = {k: v ** 0.5 for k, v in layers.items()}


def _steps(run):
    with (run / "steps.csv").open() as f:
        return {int(r["batches"]): r for r in csv.DictReader(f)}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "gd", "sam"])
def test_the_logged_update_is_the_weights_actual_change_over_the_step(real_data, tmp_path, optimizer):
    job = prepare_fit(_config(real_data, tmp_path, "r", optimizer))
    by_hand = UpdatesByHand()
    job.trainer.callbacks.insert(0, by_hand)
    job.run()
    rows = _steps(tmp_path / "r")
    assert len(by_hand.updates) == (2 if optimizer == "gd" else 6)  # gd: one step per epoch
    layers = ["dense 784->100", "dense 100->10"]
    for batches, hand in by_hand.updates.items():
        logged = [float(rows[batches][f"train/update_norm[{layer}]"]) for layer in layers]
        assert logged == pytest.approx(list(hand.values()), rel=1e-4), batches  # float32 sums
        weight = [float(rows[batches][f"train/weight_norm[{layer}]"]) for layer in layers]
        ratio = [float(rows[batches][f"train/update_ratio[{layer}]"]) for layer in layers]
        assert ratio == pytest.approx([u / w for u, w in zip(logged, weight)], rel=1e-5)
    # no values in the batches without a step (gd)
    assert all(rows[b][f"train/update_norm[{layers[0]}]"] == "" for b in rows if b not in by_hand.updates)


def test_histograms_count_every_parameter_and_match_numpys(real_data, tmp_path):
    job = prepare_fit(_config(real_data, tmp_path, "r", "adam"))
    job.run()
    run = tmp_path / "r"
    rows, elements = read_histograms(run)
    assert [r["batches"] for r in rows] == list(range(1, 7))  # every step
    assert elements["hist/weights"] == ["dense 784->100", "dense 100->10"]
    state = torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    sizes = {"dense 784->100": 784 * 100 + 100, "dense 100->10": 100 * 10 + 10}
    for row in rows:
        for kind in ("hist/weights", "hist/grads"):
            for layer, hist in zip(elements[kind], row[kind]):
                assert sum(hist[4:]) == sizes[layer]
        for layer, hist in zip(elements["hist/step_size"], row["hist/step_size"]):
            assert 0 < sum(hist[4:]) <= sizes[layer]  # parameters whose step or gradient is zero are left out
    # the last step's weights are last.ckpt's: numpy's histogram of them over the same range
    last = rows[-1]["hist/weights"]
    for i, prefix in enumerate(["net.1", "net.3"]):
        w = torch.cat([state[f"{prefix}.weight"].reshape(-1), state[f"{prefix}.bias"]]).numpy()
        lo, hi, total, squares, *counts = last[i]
        assert (lo, hi) == (pytest.approx(w.min()), pytest.approx(w.max()))
        assert total == pytest.approx(float(w.sum()), abs=1e-3) and squares == pytest.approx(float((w ** 2).sum()), rel=1e-5)
        expected, _ = np.histogram(w, bins=len(counts), range=(lo, hi))
        assert np.abs(np.array(counts) - expected).sum() <= 4  # a value on a bin edge may fall either side


def test_measuring_changes_nothing_about_the_run(real_data, tmp_path):
    for name, every in (("on", 1), ("off", 0)):
        prepare_fit(_config(real_data, tmp_path, name, "sgd", every=every, histograms_every=every)).run()
    on = torch.load(tmp_path / "on" / "last.ckpt", map_location="cpu", weights_only=True)
    off = torch.load(tmp_path / "off" / "last.ckpt", map_location="cpu", weights_only=True)
    for key in on["state_dict"]:
        torch.testing.assert_close(on["state_dict"][key], off["state_dict"][key], rtol=0, atol=0)
    headers = {}
    for name in ("on", "off"):
        with (tmp_path / name / "steps.csv").open() as f:
            headers[name] = next(csv.reader(f))
    # the "on" run did measure, at every step; the "off" run did not
    assert sum(bool(r.get("train/update_norm[dense 784->100]")) for r in _steps(tmp_path / "on").values()) == 6
    assert len(read_histograms(tmp_path / "on")[0]) == 6
    assert not any("update" in c for c in headers["off"]) and not (tmp_path / "off" / "histograms.jsonl").exists()


def test_sharpness_and_the_threshold_reach_steps_csv_and_every_step_is_in_last_ckpt(real_data, tmp_path):
    """--diagnostics.sharpness_every through the CLI: gd's threshold is 2/lr; the run keeps its
    initial weights (init.pt); with validation every 2 epochs, a 3-epoch run's last.ckpt still
    holds all 3 steps (it is written again when training ends)."""
    from lit_opt.cli import main

    args = ["fit", "--data.data_dir", str(real_data), "--data.train_size", "200", "--data.val_size", "100",
            "--data.batch_size", "100", "--model.net_args", "{hidden: shallow}", "--model.optimizer", "gd",
            "--model.lr", "0.5", "--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "2",
            "--diagnostics.sharpness_every", "1", "--diagnostics.sharpness_samples", "100",
            "--trainer.enable_progress_bar", "false", "--run.root", str(tmp_path), "--run.name", "r",
            "--run.test", "false"]
    assert main(args) == 0
    run = tmp_path / "r"
    rows = [r for r in _steps(run).values() if r.get("train/sharpness")]
    # one gd step per epoch: measured at the initial weights (step 0) and after each of the 3 steps
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert all(float(r["train/sharpness"]) > 0 for r in rows)
    assert all(float(r["train/stability_threshold"]) == pytest.approx(2 / 0.5) for r in rows)
    assert (run / "init.pt").is_file()
    assert torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 3


def test_a_negative_cadence_is_refused_naming_the_option(real_data, tmp_path, capsys):
    from lit_opt.cli import main

    assert main(["fit", "--data.data_dir", str(real_data), "--diagnostics.every", "-5", "--run.root",
                 str(tmp_path)]) == 2
    assert "diagnostics.every must be a whole number >= 0" in capsys.readouterr().err
