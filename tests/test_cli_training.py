"""`python -m lit_opt fit` end to end on real data: accuracy, run folders, checkpoints that
load in a fresh process, exact resume after a stop, divergence, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_opt.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(tmp_path: Path, *args: str) -> tuple[int, Path | None]:
    """Run `fit` in-process; returns the exit code and the run folder (if one was made)."""
    runs = tmp_path / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    code = main(["fit", "--run.root", str(runs), *QUIET, *args])
    made = sorted(set(runs.iterdir()) - before) if runs.exists() else []
    return code, (made[0] if made else None)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


SMALL_MNIST = ["--data.name", "mnist", "--data.train_size", "2000", "--data.val_size", "500",
               "--data.test_size", "1000", "--data.batch_size", "100"]


@pytest.fixture(scope="module")
def seed003_run(real_data, tmp_path_factory):
    """Seed 003's best config (deep MLP, SGD 0.1, L2 1e-3, dropout 0.25, batch 100), 3 epochs."""
    tmp = tmp_path_factory.mktemp("seed003")
    code, run_dir = fit(tmp, "--config", str(ROOT / "configs/seed003_best_mlp.yaml"),
                        "--trainer.max_epochs", "3", "--data.data_dir", str(real_data))
    assert code == 0
    return run_dir


@pytest.mark.slow
def test_seed003_best_mlp_reaches_95_5_percent_in_3_epochs(seed003_run):
    assert summary(seed003_run)["test/acc"] >= 0.955
    assert summary(seed003_run)["epochs"] == 3


@pytest.mark.slow
def test_run_folder_holds_config_metrics_checkpoints_and_pictures(seed003_run):
    names = {p.name for p in seed003_run.iterdir()}
    assert {"config.yaml", "metrics.csv", "epochs.csv", "best.ckpt", "last.ckpt", "summary.json",
            "confusion_val.csv", "confusion_val.png", "confusion_test.csv", "confusion_test.png",
            "weights.png"} <= names
    rows = (seed003_run / "epochs.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3  # header + one row per epoch
    # The test confusion matrix counts every test image once.
    counts = [list(map(int, line.split(",")[1:-1]))
              for line in (seed003_run / "confusion_test.csv").read_text().splitlines()[1:]]
    assert sum(map(sum, counts)) == 10_000


@pytest.mark.slow
def test_checkpoint_loads_in_a_fresh_process_with_no_config(seed003_run, real_data):
    script = f"""
import json, torch, lightning as L
from lit_opt.module import ClassifierModule
from lit_opt.data import ClassificationDataModule
model = ClassifierModule.load_from_checkpoint({str(seed003_run / 'best.ckpt')!r}, map_location="cpu",
                                              weights_only=True)
info = model.hparams.data_info
dm = ClassificationDataModule(info["dataset"], data_dir={str(real_data)!r})
trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
print(json.dumps(trainer.test(model, datamodule=dm, verbose=False)[0]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/",
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    assert fresh["test/acc"] == pytest.approx(summary(seed003_run)["test/acc"], abs=1e-6)


@pytest.mark.slow
def test_lenet5_on_fashion_mnist_reaches_84_percent_in_3_epochs(real_data, tmp_path):
    code, run_dir = fit(tmp_path, "--config", str(ROOT / "configs/seed004_lenet_fashion.yaml"),
                        "--trainer.max_epochs", "3", "--data.data_dir", str(real_data))
    assert code == 0
    assert summary(run_dir)["test/acc"] >= 0.84


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, schedule, steps", [("momentum", "constant", 40), ("gd", "constant", 2),
                                                        ("adam", "onecycle", 40)])
def test_a_run_stopped_mid_epoch_resumes_to_the_same_weights(optimizer, schedule, steps, real_data, tmp_path):
    # Dropout and L2 on, so the resumed run must also restore the random state and the penalty;
    # gd must also keep the gradient it had summed over the first part of the epoch. One-cycle
    # asks for the run's total steps before the checkpoint is read, which made Lightning drop
    # the loader's position (the resumed epoch restarted from its first batch).
    common = [*SMALL_MNIST, "--data.data_dir", str(real_data), "--model.dropout", "0.25",
              "--model.l2", "1e-4", "--model.optimizer", optimizer, "--model.scheduler", schedule,
              "--trainer.max_epochs", "2", "--run.test", "false"]
    code, whole = fit(tmp_path, *common)
    assert code == 0

    stop = json.dumps([{"class_path": "tests.helpers.StopAtStep", "init_args": {"epoch": 1, "batch": 6}}])
    code, stopped = fit(tmp_path, *common, "--trainer.callbacks", stop)
    assert code == 130  # stopped on request, in epoch 1 (20 batches per epoch)
    state = torch.load(stopped / "last.ckpt", weights_only=True)
    assert state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"] == 7

    # The run's config.yaml names a callback (the stand-in for Ctrl-C), so it is used only when
    # named: a config found beside a checkpoint must be plain settings (tests/test_catalogue.py).
    code, same = fit(tmp_path, "--config", str(stopped / "config.yaml"), "--ckpt_path", str(stopped / "last.ckpt"))
    assert code == 0 and same is None  # resumed in its own folder, no new one
    resumed = torch.load(stopped / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == steps == torch.load(whole / "last.ckpt", weights_only=True)["global_step"]
    # The metrics logged before the stop are still there (a resume appends, never deletes).
    epochs = (stopped / "metrics.csv").read_text().splitlines()
    assert any(line.split(",")[0] == "0" for line in epochs[1:])
    assert (stopped / "epochs.csv").read_text().count("\n") == 3  # header + epochs 0 and 1
    a, b = _weights(whole / "last.ckpt"), resumed["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_diverging_run_stops_naming_the_step_and_keeps_finite_weights(real_data, tmp_path, capsys):
    code, run_dir = fit(tmp_path, *SMALL_MNIST, "--data.data_dir", str(real_data),
                        "--model.net", "mlp", "--model.net_args", "{hidden: deep}",
                        "--model.optimizer", "sgd", "--model.lr", "10", "--trainer.max_epochs", "3")
    err = capsys.readouterr().err
    assert code == 1
    assert "diverged" in err and "step" in err and "Traceback" not in err
    weights = {k: v for k, v in _weights(run_dir / "last.ckpt").items() if k.startswith("net.")}
    assert weights and all(torch.isfinite(v).all() for v in weights.values())
    assert json.loads((run_dir / "diverged.json").read_text())["step"] >= 1


@pytest.mark.parametrize("args, field", [
    (["--model.lr", "-1"], "lr"),
    (["--model.lr", "0"], "lr"),
    (["--model.dropout", "1.0"], "dropout"),
    (["--model.l2", "-0.1"], "l2"),
    (["--model.net_args", "{hidden: [100, 0]}"], "hidden"),
    (["--data.batch_size", "0"], "batch_size"),
    (["--model.net", "resnet50"], "linear, mlp, dense784, lenet5, fast_cnn, cifar_resnet, airbench"),
    (["--model.optimizer", "adamx"], "gd, sgd, momentum"),
    (["--model.scheduler", "linear"], "constant, step, cosine, onecycle"),
    (["--model.optimizer", "adam", "--model.optimizer_args", "{betas: [0.9, 1.5]}"], "betas"),
])
def test_bad_input_is_rejected_before_any_data_loads(args, field, tmp_path, capsys):
    # The data folder does not exist and downloads are off: reaching the data would fail differently.
    code, run_dir = fit(tmp_path, "--data.data_dir", str(tmp_path / "nowhere"), "--data.download", "false",
                        *args)
    err = capsys.readouterr().err
    assert code == 2
    assert field in err and "Traceback" not in err and "nowhere" not in err
    assert run_dir is None  # no run folder for a run that never started


def test_an_existing_run_name_is_refused_not_overwritten(tmp_path, capsys):
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "mine" / "precious.txt").write_text("results")
    code, _ = fit(tmp_path, "--run.name", "mine", "--data.data_dir", str(tmp_path / "nowhere"),
                  "--data.download", "false")
    assert code == 2
    assert "exists already" in capsys.readouterr().err
    assert (tmp_path / "runs" / "mine" / "precious.txt").read_text() == "results"


def test_default_run_names_never_collide(tmp_path):
    from lit_opt.runs import new_run_dir

    first = new_run_dir(tmp_path, None, "mnist-mlp-sgd-20260101-000000")
    second = new_run_dir(tmp_path, None, "mnist-mlp-sgd-20260101-000000")
    assert first != second and first.is_dir() and second.is_dir()


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_instantiates(config, tmp_path):
    from lit_opt.lightning_cli import LitOptCLI

    cli = LitOptCLI(args=["--config", str(config), "--run.root", str(tmp_path)], run=False)
    assert cli.model.hparams.data_info["dataset"] == cli.datamodule.name


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "toy"):
        assert command in out
    assert main(["frobnicate"]) == 2
    assert "choose one of" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_a_bad_checkpoint_path_is_one_clear_error(content, tmp_path, capsys):
    path = tmp_path / "broken.ckpt"
    if content is not None:
        path.write_bytes(content)
    for command in ("fit", "test"):
        assert main([command, "--ckpt_path", str(path), "--run.root", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err
