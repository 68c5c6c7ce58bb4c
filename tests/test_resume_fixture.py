"""A checkpoint written by the code before the reshaping (tests/fixtures/resume_mid_epoch/,
made by tests/fixtures/make_resume_fixture.py) still resumes, mid-epoch, to the very run an
uninterrupted fit makes now: weights, step, best score. Lightning keys a callback's state by
its class name and arguments, so a renamed or re-parametrized callback would silently lose
the best score: this test is what notices."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from lit_opt.cli import main
from tests.fixtures.make_resume_fixture import ARGS, FIXTURE
from tests.test_catalogue import QUIET, write_mnist


def test_a_checkpoint_from_before_the_reshaping_resumes_to_the_uninterrupted_run(tmp_path):
    data = write_mnist(tmp_path / "data")
    whole = tmp_path / "runs" / "whole"
    assert main(["fit", "--run.root", str(whole.parent), "--run.name", "whole", *QUIET, *ARGS,
                 "--data.data_dir", str(data)]) == 0

    run = tmp_path / "runs" / "old"
    shutil.copytree(FIXTURE, run)
    old = torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)
    assert old["global_step"] == 1 and old["epoch"] == 1  # gd: one step per epoch; stopped in epoch 1
    best_before = next(v["best_model_score"] for k, v in old["callbacks"].items() if "val/acc" in k)
    assert main(["fit", "--ckpt_path", str(run / "last.ckpt"), "--data.data_dir", str(data), *QUIET]) == 0

    resumed, reference = (torch.load(p / "last.ckpt", map_location="cpu", weights_only=True) for p in (run, whole))
    assert resumed["global_step"] == reference["global_step"] == 3
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, atol=1e-6, rtol=0)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_val_acc"] == json.loads((whole / "summary.json").read_text())["best_val_acc"]
    assert summary["best_val_acc"] >= round(float(best_before), 6)  # the old best was kept, not reset
