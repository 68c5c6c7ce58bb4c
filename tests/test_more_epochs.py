"""`fit --ckpt_path RUN/last.ckpt --more_epochs N`: a finished run trains N more epochs in its
own folder, its logs continuing; an ended schedule holds its final rate; early stopping's
patience restarts; bad uses are refused with a message."""

from __future__ import annotations

import csv

import pytest
import torch

from lit_opt.cli import main

SMALL = ["--data.train_size", "1000", "--data.val_size", "200", "--data.batch_size", "100",
         "--model.net_args", "{hidden: shallow}", "--run.test", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.accelerator", "cpu"]


def _epochs(run):
    with (run / "epochs.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_more_epochs_continue_the_run_and_an_ended_schedule_holds_its_final_rate(real_data, tmp_path, schedule):
    args = ["fit", "--data.data_dir", str(real_data), *SMALL, "--model.scheduler", schedule,
            "--trainer.max_epochs", "2", "--run.root", str(tmp_path), "--run.name", "r"]
    assert main(args) == 0
    run = tmp_path / "r"
    first = _epochs(run)
    assert main(["fit", "--ckpt_path", str(run / "last.ckpt"), "--more_epochs", "2",
                 "--data.data_dir", str(real_data)]) == 0
    rows = _epochs(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3] and rows[:2] == first  # continued, not redone
    assert torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 40
    with (run / "steps.csv").open() as f:
        steps = list(csv.DictReader(f))
    assert [int(r["batches"]) for r in steps] == list(range(1, 41))
    lrs = [float(r["train/lr"]) for r in steps]  # the rate each step used
    # the schedule ended with the 20th step: the 20 more train at the rate it ended at, its
    # minimum (one-cycle: max_lr / 25 / 1e4 at its last step; cosine: eta_min, 0, at T_max)
    end = 0.1 / 25 / 1e4 if schedule == "onecycle" else 0.0
    assert lrs[20:] == pytest.approx([end] * 20, rel=1e-6, abs=1e-12)
    assert min(lrs[:20]) >= end and max(lrs[:20]) == pytest.approx(0.1)  # it did run its course


def test_early_stoppings_patience_restarts_only_for_a_run_it_ended():
    from lit_opt.callbacks import PatientEarlyStopping

    ended = PatientEarlyStopping(monitor="val/acc", mode="max", patience=2)
    ended.load_state_dict({"wait_count": 2, "stopped_epoch": 5, "best_score": torch.tensor(0.9), "patience": 2})
    assert ended.wait_count == 0 and ended.stopped_epoch == 0 and float(ended.best_score) == pytest.approx(0.9)
    interrupted = PatientEarlyStopping(monitor="val/acc", mode="max", patience=2)
    interrupted.load_state_dict({"wait_count": 1, "stopped_epoch": 0, "best_score": torch.tensor(0.9), "patience": 2})
    assert interrupted.wait_count == 1  # mid-run: exactly as it was


def test_more_epochs_is_refused_without_a_run_or_a_number(real_data, tmp_path, capsys):
    assert main(["fit", "--more_epochs", "2", "--data.data_dir", str(real_data)]) == 2
    assert "--ckpt_path RUN/last.ckpt" in capsys.readouterr().err
    assert main(["fit", "--ckpt_path", str(tmp_path / "x.ckpt"), "--more_epochs", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["fit", "--ckpt_path", str(tmp_path / "x.ckpt"), "--more_epochs", "2",
                 "--trainer.max_epochs", "9"]) == 2
    assert "not both" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
