"""`python -m lit_opt lr-find`: Lightning's range test driving lit_opt's own learning rate, for
every strategy (automatic, SAM's closure), leaving nothing behind and changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lit_opt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--data.train_size", "1000", "--data.val_size", "200", "--data.batch_size", "50",
         "--model.net", "mlp", "--model.net_args", "{hidden: shallow}", "--trainer.accelerator", "cpu"]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "sam"])
def test_the_rate_rises_over_the_range_and_the_suggestion_is_inside_it(real_data, optimizer, tmp_path,
                                                                        monkeypatch):
    from lit_opt.lr_find import find_lr

    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the scratch folder goes here
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    result = find_lr(["--data.data_dir", str(real_data), "--model.optimizer", optimizer, *SMALL],
                     min_lr=1e-5, max_lr=1.0, num_training=30)
    lrs = np.array(result["lr"])
    assert len(lrs) == 30 and np.all(np.diff(lrs) > 0)
    # exponential from min_lr to max_lr: a constant factor (1e5)^(1/30) a batch (Lightning's
    # schedule takes its first step at twice that), ending at max_lr on the last batch
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(lrs[2:] / lrs[1:-1], (1.0 / 1e-5) ** (1 / 30), rtol=1e-6)
    assert lrs[0] < result["suggestion"] < lrs[-1] and result["suggestion"] in result["lr"]
    assert np.all(np.isfinite(result["loss"][:10]))
    # no run folder, no checkpoint, no scratch folder: the folders look as they did
    assert _files(tmp_path) == before
    assert not list(tmp_path.rglob("*.ckpt"))


def test_muons_adamw_part_keeps_its_ratio_to_the_rate_under_test(real_data, tmp_path, monkeypatch):
    from lit_opt import module as lit_module
    from lit_opt.lr_find import find_lr

    seen = []
    follow = lit_module._follow_range_test

    def spy(optimizer, scheduler, ratios):
        follow(optimizer, scheduler, ratios)
        seen.append([g["lr"] for g in optimizer.param_groups])

    monkeypatch.setattr(lit_module, "_follow_range_test", spy)
    monkeypatch.chdir(tmp_path)
    find_lr(["--data.data_dir", str(real_data), "--model.optimizer", "muon",
             "--model.net", "mlp", "--model.net_args", "{hidden: deep}", *SMALL[:6], *SMALL[10:]],
            min_lr=1e-4, max_lr=1.0, num_training=20)
    ratios = {round(lr / groups[0], 6) for groups in seen[1:] for lr in groups}
    # Muon's groups follow the rate (ratio 1), AdamW's at 3e-4 / 0.02, the defaults' ratio
    assert ratios == {1.0, round(3e-4 / 0.02, 6)}


def test_gd_and_a_bad_range_are_refused_with_a_message(real_data, tmp_path):
    from lit_opt.lr_find import find_lr

    with pytest.raises(ConfigError, match="gd.*step per batch"):
        find_lr(["--data.data_dir", str(real_data), "--model.optimizer", "gd", *SMALL], num_training=20)
    with pytest.raises(ConfigError, match="--max_lr must be a number larger than --min_lr"):
        find_lr(["--model.optimizer", "sgd"], min_lr=1e-3, max_lr=1e-4)


def test_the_command_prints_json_writes_the_plot_and_leaves_the_config_alone(real_data, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: {optimizer: adam}\ntrainer: {max_epochs: 3}\n")
    original = config.read_bytes()
    env = {**os.environ, "LIT_OPT_DATA": str(real_data), "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "lit_opt", "lr-find", "--config", str(config), *SMALL,
                          "--num_training", "20", "--json", "--out", str(tmp_path / "found")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["optimizer"] == "adam" and result["configured_lr"] == 0.001  # Adam's default, untouched
    assert Path(result["plot"]).read_bytes()[:4] == b"\x89PNG"
    rows = Path(result["data"]).read_text().splitlines()
    assert rows[0] == "lr,loss" and len(rows) == 21
    assert config.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["found", "run.yaml"]  # no run folder, no scratch



def test_the_command_refuses_gd_with_exit_2_and_a_message(real_data, tmp_path, capsys, monkeypatch):
    from lit_opt.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["lr-find", "--model.optimizer", "gd", "--data.data_dir", str(real_data), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "cannot test 'gd'" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())
