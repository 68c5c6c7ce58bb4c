"""compare / sweep / report end to end on a tiny MNIST-format dataset: the reported means and
stds recomputed from the trials' own files, divergence, resume, commands, study files."""

from __future__ import annotations

import csv
import json
import shlex
import statistics
from pathlib import Path

import numpy as np
import pytest

from lit_opt.cli import main
from lit_opt.studies import spec as specs
from tests.helpers import write_idx

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """A learnable 10-class MNIST file set: 300 training and 100 test images; class k is a
    bright 7x7 block at one of ten places, plus noise."""
    root = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)

    def make(n):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, k in enumerate(labels):
            r, c = 2 + 8 * (k // 4), 2 + 6 * (k % 4)
            images[i, r:r + 7, c:c + 7] = 250
        return images, labels

    write_idx(root / "MNIST" / "raw", "train", *make(300))
    write_idx(root / "MNIST" / "raw", "t10k", *make(100))
    return root


def tiny(digits: Path) -> list[str]:
    return ["--data.data_dir", str(digits), "--data.download", "false", "--data.val_size", "50",
            "--data.batch_size", "50", "--model.net", "mlp", "--model.net_args", "{hidden: [8]}",
            "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu"]


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def check_groups_against_trials(study: Path, group_of) -> list[dict]:
    """Every group's mean and std in groups.csv equal those recomputed from its trials' summary.json."""
    groups = read_csv(study / "report" / "groups.csv")
    trials = [t["name"] for t in json.loads((study / "study.json").read_text())["trials"]]
    for row in groups:
        mine = [t for t in trials if group_of(t) == row["group"] and (study / t / "summary.json").exists()]
        assert mine, row["group"]
        for metric, col in (("test/acc", "test_acc"), ("test/loss", "test_loss"), ("best_val_acc", "best_val_acc")):
            xs = [summary(study / t)[metric] for t in mine]
            assert float(row[f"{col}_mean"]) == pytest.approx(statistics.fmean(xs), abs=1e-12)
            if len(xs) > 1:
                assert float(row[f"{col}_std"]) == pytest.approx(statistics.stdev(xs), abs=1e-12)
        times = [statistics.fmean(float(r["train/epoch_time"]) for r in read_csv(study / t / "epochs.csv"))
                 for t in mine]
        assert float(row["epoch_time_mean"]) == pytest.approx(statistics.fmean(times), abs=1e-9)
    return groups


# --- values and commands -----------------------------------------------------------------


def test_value_lists():
    values = specs.parse_values("logspace(-5,-1,10)")
    assert len(values) == 10 and values[0] == 1e-5 and values[-1] == 0.1
    ratios = [b / a for a, b in zip(values, values[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-3)  # log-spaced
    assert specs.parse_values("linspace(0, 0.5, 3)") == [0.0, 0.25, 0.5]
    assert specs.parse_values("0,0.25,0.5") == [0, 0.25, 0.5]
    assert specs.parse_values("[1e-3, 1e-2]") == [0.001, 0.01]  # YAML 1.1 would read strings
    assert specs.parse_values("[[10, 10], [50, 50]]") == [[10, 10], [50, 50]]
    assert specs.parse_values(32) == [32]
    # command-line words that fit's YAML parser reads back as the same numbers
    import yaml

    for v in [1e-5, 2.783e-05, 0.1, 1e20, 3.0]:
        assert yaml.safe_load(specs.cli_value(v)) == v
    assert specs.cli_value({"base": "adam", "rho": 1e-5}) == "{base: adam, rho: 1.0e-05}"


def test_print_commands_one_fit_line_per_trial(tmp_path, capsys, digits):
    out = tmp_path / "study"
    code = main(["sweep", "--param", "model.l2", "logspace(-4,-2,3)", "--seeds", "2", "--out", str(out),
                 "--print-commands", *tiny(digits)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all(line.startswith("python -m lit_opt fit ") for line in lines)
    names = [shlex.split(line)[shlex.split(line).index("--run.name") + 1] for line in lines]
    assert names == [f"l2={v}_seed{s}" for v in ("0.0001", "0.001", "0.01") for s in (0, 1)]
    assert "--model.l2 0.001 --seed_everything 1" in lines[3]
    assert not any(p.is_dir() for p in out.iterdir())  # nothing ran; only study.json
    assert len(json.loads((out / "study.json").read_text())["trials"]) == 6


@pytest.mark.parametrize("argv, text", [
    (["--seed", "3"], "unknown option --seed"),
    (["--run.name", "x"], "set by the study"),
    (["--param", "model.l2", "logspace(-4,-2)"], "logspace(start, stop, count)"),
    (["--param", "l2", "0.1"], "not a fit config key"),
])
def test_bad_study_options_are_refused_before_any_trial(tmp_path, capsys, argv, text):
    code = main(["sweep", "--out", str(tmp_path / "s"), "--param", "model.lr", "0.1", *argv])
    assert code == 2
    assert text in capsys.readouterr().err
    assert not any((tmp_path / "s").glob("*/config.yaml"))


def test_a_study_folder_refuses_a_trial_with_other_settings(tmp_path, capsys):
    out = str(tmp_path / "s")
    assert main(["sweep", "--out", out, "--param", "model.lr", "0.1", "--print-commands"]) == 0
    code = main(["sweep", "--out", out, "--param", "model.lr", "0.1", "--print-commands", "--model.l2", "0.01"])
    assert code == 2
    assert "other settings" in capsys.readouterr().err


def _tiny_image_archive(path: Path) -> None:
    import tarfile

    from PIL import Image

    folder = path.parent / "images"
    for split in ("train", "test"):
        for k, name in enumerate(("cat", "dog")):
            (folder / split / name).mkdir(parents=True)
            Image.new("RGB", (32, 32), (40 + 100 * k, 0, 0)).save(folder / split / name / "0.png")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder / "train", "train")
        tar.add(folder / "test", "test")


@pytest.mark.parametrize("study_file", sorted((ROOT / "configs" / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_study_file_builds_trials_fit_accepts(study_file, tmp_path, monkeypatch):
    from lit_opt.lightning_cli import LitOptCLI
    from lit_opt.studies.runner import build

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LIT_OPT_DATA", str(tmp_path))
    _tiny_image_archive(tmp_path / "cifar10-jpg.tar.gz")  # the image folder the CIFAR study reads
    kind = specs.read_study_file(study_file)[0]["kind"]
    study, _ = build(kind, ["--study", str(study_file), "--out", str(tmp_path / "s")])
    assert len({t.name for t in study.trials}) == len(study.trials) > 1
    for trial in {t.name: t for t in (study.trials[0], study.trials[-1])}.values():
        cli = LitOptCLI(args=trial.args, run=False)  # every key known and valid
        for key, value in trial.overrides.items():
            section, *rest = key.split(".")
            got = cli.config[section]
            for part in rest:
                got = got[part]
            assert got == value or str(got) == str(value), key


# --- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(digits, tmp_path_factory):
    """lr 0.05 and 0.5, two seeds each."""
    out = tmp_path_factory.mktemp("sweep") / "lr"
    code = main(["sweep", "--param", "model.lr", "0.05,0.5", "--seeds", "2", "--out", str(out), *tiny(digits)])
    assert code == 0
    return out


def test_sweep_reports_mean_and_std_of_its_trials(swept):
    groups = check_groups_against_trials(swept, lambda t: "lr=" + t.split("=")[1].split("_")[0])
    assert [g["group"] for g in groups] == ["lr=0.05", "lr=0.5"]
    assert all(g["finished"] == "2" and g["seeds"] == "0 1" for g in groups)
    for name in ("report.md", "trials.csv", "class_accuracy.csv", "curves.png", "test_acc.png",
                 "epoch_time.png", "update_ratios.png", "best_confusion_test.png"):
        assert (swept / "report" / name).stat().st_size > 0, name
    md = (swept / "report" / "report.md").read_text()
    assert "| lr | seeds | test acc |" in md and "python -m lit_opt fit" in md
    # the command a group reports reproduces its first trial
    assert groups[0]["command"] == json.loads((swept / "study.json").read_text())["trials"][0]["command"]


def test_report_of_run_folders_groups_by_config_minus_seed(swept, tmp_path):
    folders = [str(p) for p in sorted(swept.iterdir()) if (p / "config.yaml").exists()]
    assert main(["report", *folders, "--out", str(tmp_path / "r")]) == 0
    mine = {g["group"]: g for g in read_csv(tmp_path / "r" / "groups.csv")}
    study = {g["group"]: g for g in read_csv(swept / "report" / "groups.csv")}
    assert mine.keys() == study.keys() == {"lr=0.05", "lr=0.5"}
    for name in mine:
        for col in ("test_acc_mean", "test_acc_std", "test_loss_mean", "best_val_acc_mean"):
            assert mine[name][col] == study[name][col]


def test_compare_chooses_each_learning_rate_on_validation(digits, tmp_path):
    out = tmp_path / "cmp"
    code = main(["compare", "--optimizers", "sgd:0.02,0.5", "--seeds", "0,1", "--out", str(out),
                 *tiny(digits), "--trainer.max_epochs", "1"])
    assert code == 0
    groups = check_groups_against_trials(out, lambda t: "lr=" + t.split("lr=")[1].split("_")[0])
    assert [g["group"] for g in groups] == ["lr=0.02", "lr=0.5"]
    best = max(groups, key=lambda g: float(g["best_val_acc_mean"]))
    assert [g["selected"] for g in groups] == [str(g is best) for g in groups]
    assert (out / "report" / "lr_sensitivity.png").stat().st_size > 0
    assert "## Chosen learning rates" in (out / "report" / "report.md").read_text()


def test_a_diverging_trial_is_reported_and_the_others_finish(digits, tmp_path, capsys):
    out = tmp_path / "div"
    code = main(["sweep", "--param", "model.lr", "[0.1, 1e20]", "--out", str(out), *tiny(digits)])
    assert code == 0
    err = capsys.readouterr().err
    assert "diverged" in err
    info = json.loads((out / "lr=1e+20_seed0" / "diverged.json").read_text())
    assert isinstance(info["step"], int) and "diverged" in info["message"]
    assert (out / "lr=0.1_seed0" / "summary.json").exists()
    trials = {t["trial"]: t for t in read_csv(out / "report" / "trials.csv")}
    assert trials["lr=1e+20_seed0"]["state"] == "diverged"
    assert trials["lr=1e+20_seed0"]["diverged_step"] == str(info["step"])
    assert f"diverged at step {info['step']}" in (out / "report" / "report.md").read_text()
    # run again: nothing is rerun, the diverged trial included
    assert main(["sweep", "--param", "model.lr", "[0.1, 1e20]", "--out", str(out), *tiny(digits)]) == 0
    assert capsys.readouterr().out.count("skipped") == 2


def _snapshot(folder: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_interrupted_study_resumes_without_touching_finished_trials(digits, tmp_path, capsys):
    out = tmp_path / "resume"
    sweep = ["sweep", "--param", "model.l2", "[0.0, 0.01, 0.1]", "--out", str(out), *tiny(digits)]
    # The study was stopped: one trial finished, the second stopped mid-epoch 1 by Ctrl-C (exit 130,
    # last.ckpt kept), the third's folder holds only a file of the user's (no checkpoint).
    assert main([*sweep, "--print-commands"]) == 0
    commands = [shlex.split(line)[4:] for line in capsys.readouterr().out.strip().splitlines()]
    assert main(["fit", *commands[0]]) == 0
    stop = json.dumps([{"class_path": "tests.helpers.StopAtStep", "init_args": {"step": 7}}])
    assert main(["fit", *commands[1], "--trainer.callbacks", stop]) == 130
    (out / "l2=0.1_seed0").mkdir()
    (out / "l2=0.1_seed0" / "notes.txt").write_text("mine")
    finished = {"l2=0_seed0": _snapshot(out / "l2=0_seed0")}
    assert {"summary.json", "best.ckpt", "epochs.csv"} <= {p.name for p in finished["l2=0_seed0"]}

    assert main(sweep) == 0
    log = capsys.readouterr().out
    assert log.count("skipped") == 1 and "resuming from" in log and "moved to" in log
    for name, files in finished.items():
        assert _snapshot(out / name) == files  # same bytes, same modification times
    resumed = out / "l2=0.01_seed0"
    assert summary(resumed)["epochs"] == 2 and summary(resumed)["global_step"] == 10
    assert [r["epoch"] for r in read_csv(resumed / "epochs.csv")] == ["0", "1"]
    assert (out / "l2=0.1_seed0" / "summary.json").exists()
    (aside,) = (out / "interrupted").iterdir()
    assert (aside / "notes.txt").read_text() == "mine"
    assert [g["finished"] for g in read_csv(out / "report" / "groups.csv")] == ["1"] * 3


def test_jobs_2_runs_trials_in_parallel_processes_with_the_sequential_results(swept, digits, tmp_path):
    import torch

    out = tmp_path / "lr"
    assert main(["sweep", "--param", "model.lr", "0.05,0.5", "--seeds", "2", "--out", str(out), "--jobs", "2",
                 *tiny(digits)]) == 0
    names = [t["name"] for t in json.loads((swept / "study.json").read_text())["trials"]]
    assert len(names) == 4
    for name in names:  # each trial as its sequential twin: same numbers, same weights
        mine, theirs = summary(out / name), summary(swept / name)
        for key in ("test/acc", "test/loss", "best_val_acc", "global_step"):
            assert mine[key] == theirs[key], (name, key)
        a = torch.load(out / name / "last.ckpt", weights_only=True)["state_dict"]
        b = torch.load(swept / name / "last.ckpt", weights_only=True)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in b), name
        assert (out / "logs" / f"{name}.log").stat().st_size > 0
    mine = {g["group"]: g["test_acc_mean"] for g in read_csv(out / "report" / "groups.csv")}
    assert mine == {g["group"]: g["test_acc_mean"] for g in read_csv(swept / "report" / "groups.csv")}
    # A second run skips every finished trial, as a sequential study does.
    assert main(["sweep", "--param", "model.lr", "0.05,0.5", "--seeds", "2", "--out", str(out), "--jobs", "2",
                 *tiny(digits)]) == 0


def test_sigterm_stops_a_parallel_study_trials_keep_their_checkpoints_and_the_rerun_finishes(digits, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "par"
    argv = ["sweep", "--param", "model.lr", "0.05,0.5", "--out", str(out), "--jobs", "2", *tiny(digits),
            "--data.batch_size", "5", "--trainer.max_epochs", "12"]
    proc = subprocess.Popen([sys.executable, "-m", "lit_opt", *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    t0 = time.monotonic()
    while len(list(out.glob("*/last.ckpt"))) < 2:  # both trials past their first epoch
        assert proc.poll() is None and time.monotonic() - t0 < 120, "the trials did not start"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output
    assert "Study stopped by SIGTERM" in output
    for log in (out / "logs").glob("*.log"):
        assert "Stopped by SIGTERM" in log.read_text()  # each trial stopped after a batch, saving
    assert not list(out.glob("*/summary.json"))
    assert main(argv) == 0
    assert len(list(out.glob("*/summary.json"))) == 2


def test_a_study_run_without_its_test_still_reports(digits, tmp_path):
    out = tmp_path / "untested"
    assert main(["sweep", "--param", "model.lr", "0.05,0.5", "--out", str(out), *tiny(digits),
                 "--run.test", "false"]) == 0
    groups = read_csv(out / "report" / "groups.csv")
    assert [g["finished"] for g in groups] == ["1", "1"] and all(not g["test_acc_mean"] for g in groups)


def test_parallel_trials_take_the_least_busy_device_never_doubling_up_while_one_is_free():
    """With two GPUs and trial 1 (device 0) finished while trial 2 still runs on device 1,
    trial 3 goes to device 0 (it went to device 1, by a count of running trials)."""
    from lit_opt.studies.parallel import least_busy

    devices = ["0", "1"]
    assert least_busy(devices, []) == "0"
    assert least_busy(devices, ["0"]) == "1"
    assert least_busy(devices, ["1"]) == "0"  # device 0's trial finished, device 1's still runs
    assert least_busy(devices, ["0", "1"]) == "0"  # --jobs above the device count: shared in turn
    assert least_busy(["2", "5"], ["2", "2", "5"]) == "5"
