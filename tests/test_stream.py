"""The live stream: every training batch's series reach the listeners and steps.csv, the same
rows come back from the file, the per-layer gradient norms are the gradients' norms, and a
stopped and resumed run lists every batch exactly once."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lit_opt.jobs import prepare_fit
from lit_opt.run_files import read_histograms, read_rows, read_steps
from lit_opt.stream import Listener
from tests.helpers import GradNormsByHand


class Recorder(Listener):
    def __init__(self):
        self.info, self.rows, self.epochs, self.calls = None, [], [], 0

    def on_start(self, info):
        self.info = info

    def on_steps(self, rows):
        self.calls += 1
        self.rows.extend(rows)

    def on_epoch(self, row):
        self.epochs.append(row)


def _config(real_data, root, optimizer, epochs=2, **model):
    return {
        "seed_everything": 0,
        "trainer": {"max_epochs": epochs, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 3,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "callbacks": [{"class_path": "tests.helpers.GradNormsByHand"}]},
        "model": {"net": "mlp", "net_args": {"hidden": [20, 20]}, "optimizer": optimizer, **model},
        "data": {"name": "mnist", "data_dir": str(real_data), "train_size": 400, "val_size": 100,
                 "test_size": 100, "batch_size": 100},
        "run": {"root": str(root), "test": False},
    }


@pytest.mark.parametrize("optimizer", ["sgd", "gd", "sam"])
def test_every_batch_reaches_listeners_and_steps_csv_with_the_gradient_norms(optimizer, real_data, tmp_path):
    rec = Recorder()
    job = prepare_fit(_config(real_data, tmp_path, optimizer), listeners=[rec])
    job.run()
    by_hand = next(cb for cb in job.trainer.callbacks if isinstance(cb, GradNormsByHand)).norms

    # 400 images in batches of 100, 2 epochs: 8 rows, numbered 1..8, in order.
    assert rec.info["batches_per_epoch"] == 4 and rec.info["batches"] == 0
    assert [r["batches"] for r in rec.rows] == list(range(1, 9))
    assert [(r["epoch"], r["batch"]) for r in rec.rows] == [(e, b) for e in range(2) for b in range(4)]
    assert all(math.isfinite(r["train/loss"]) and r["train/lr"] > 0 for r in rec.rows)
    assert [e["epoch"] for e in rec.epochs] == [0, 1] and "weights" in rec.epochs[0]

    # Gradient norms: one per optimizer step (gd: one per epoch, at its last batch), per layer,
    # named by what the layer is, equal to the norms computed by hand from the gradients.
    layers = rec.info["elements"]["train/grad_norm"]
    assert layers == ["dense 784->20", "dense 20->20", "dense 20->10"]
    with_norms = [r for r in rec.rows if "train/grad_norm" in r]
    expected_rows = [4, 8] if optimizer == "gd" else list(range(1, 9))
    assert [r["batches"] for r in with_norms] == expected_rows
    assert len(by_hand) == len(with_norms)
    for row, hand in zip(with_norms, by_hand):
        assert row["train/grad_norm"] == pytest.approx(list(hand.values()), rel=1e-5)

    # steps.csv holds the same rows: every value a float32 holds, the same keys.
    rows, elements = read_steps(job.run_dir)
    assert elements == {name: layers for name in ("train/grad_norm", "train/weight_norm", "train/update_norm",
                                                  "train/update_ratio")}
    assert len(rows) == len(rec.rows)
    for live, disk in zip(rec.rows, rows):
        assert {k for k in live if not k.startswith("hist/")} == disk.keys()
        for key, value in disk.items():
            if key == "time":
                assert value == pytest.approx(live[key], rel=1e-8)
            else:
                np.testing.assert_array_equal(np.float32(value), np.float32(live[key]))
    # ... and the histograms go to histograms.jsonl, row for row
    hist_rows, _ = read_histograms(job.run_dir)
    live_hists = [r for r in rec.rows if "hist/weights" in r]
    assert [r["batches"] for r in hist_rows] == [r["batches"] for r in live_hists] and hist_rows
    for live, disk in zip(live_hists, hist_rows):
        for key in ("hist/weights", "hist/grads", "hist/step_size"):
            np.testing.assert_array_equal(np.float32(disk[key]), np.float32(live[key]))

    # The step loss also reaches the logger (metrics.csv) every log_every_n_steps batches, at
    # Lightning's step numbering (batches - 1), with the same value.
    logged = {int(r["step"]): float(r["train/loss_step"]) for r in read_rows(job.run_dir / "metrics.csv")
              if r.get("train/loss_step")}
    assert sorted(logged) == [2, 5]
    for step, value in logged.items():
        assert np.float32(value) == np.float32(rec.rows[step]["train/loss"])


def test_values_are_batched_out_not_sent_one_batch_at_a_time(real_data, tmp_path, monkeypatch):
    """With the flush interval longer than the run, the listener gets the steps in a few
    batches (each epoch's end, each checkpoint), never one call per training batch."""
    from lit_opt.stream import LiveStream

    init = LiveStream.__init__
    monkeypatch.setattr(LiveStream, "__init__", lambda self, *a, **k: init(self, *a, **{**k, "flush_seconds": 1e9}))
    rec = Recorder()
    config = _config(real_data, tmp_path, "sgd", epochs=2)
    config["data"]["batch_size"] = 20  # 20 batches an epoch
    job = prepare_fit(config, listeners=[rec])
    job.run()
    assert len(rec.rows) == 40
    assert rec.calls <= 4  # per epoch: its end (and the checkpoints right after send nothing new)


@pytest.mark.slow
def test_a_stopped_and_resumed_run_lists_every_batch_once_as_an_uninterrupted_one(real_data, tmp_path):
    from tests.helpers import StopAtStep  # noqa: F401  (named in the config below)

    config = _config(real_data, tmp_path / "whole", "momentum", epochs=2, dropout=0.25)
    whole = prepare_fit(config)
    whole.run()

    config = _config(real_data, tmp_path / "parts", "momentum", epochs=2, dropout=0.25)
    config["trainer"]["callbacks"] = [{"class_path": "tests.helpers.StopAtStep", "init_args": {"epoch": 1, "batch": 1}}]
    from lit_opt.errors import RunStopped

    first = prepare_fit(config)
    with pytest.raises(RunStopped):
        first.run()
    assert len(read_steps(first.run_dir)[0]) == 6  # 4 batches of epoch 0, 2 of epoch 1
    config["trainer"]["callbacks"] = []
    second = prepare_fit(config, ckpt_path=str(first.run_dir / "last.ckpt"))
    assert second.run_dir == first.run_dir
    second.run()

    a, _ = read_steps(whole.run_dir)
    b, _ = read_steps(first.run_dir)
    assert [r["batches"] for r in b] == list(range(1, 9))
    for x, y in zip(a, b):
        assert x["train/loss"] == y["train/loss"] and x["train/grad_norm"] == y["train/grad_norm"]
        assert (x["epoch"], x["batch"], x["step"]) == (y["epoch"], y["batch"], y["step"])
    assert [r["time"] for r in b] == sorted(r["time"] for r in b)  # training time runs on across the resume
