"""The catalogue of bad inputs and faults (shared/CATALOGUE.md), one test per row.

Every row is run as a user would: real files on disk, the real CLI (`lit_opt.cli.main`, in
this process where that is faithful, a real `python -m lit_opt` process where a signal, a
kill or a second process is the point), real checkpoints. Each asserts what the user relies
on: one clear message naming what was wrong and what is allowed, the documented exit code
(lit_opt/errors.py: 1 diverged, 2 bad input, 74 I/O failure, 130 Ctrl-C, 143 SIGTERM),
nothing lost, no stray run folder, and no code run from a file. The data is a small MNIST
written here, so none of these tests is skipped for want of the real datasets. The two rows
about the desktop app are in tests/gui/test_catalogue_app.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_opt.cli import main
from tests.helpers import images_for, write_idx
from tests.test_inference import RunsCode, bad_checkpoints

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


# --- small data and runs ---------------------------------------------------------------------


def write_mnist(root: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """A small MNIST in torchvision's layout; digits are random, labels too (nothing is learnt)."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    write_idx(raw, "train", images_for(n_train, (28, 28), 1), rng.integers(0, 10, n_train))
    write_idx(raw, "t10k", images_for(n_test, (28, 28), 2), rng.integers(0, 10, n_test))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"))


def small(data: Path, runs: Path, *more: str) -> list[str]:
    """fit options for a run of a second or two: 500 training images, batches of 50."""
    return ["--run.root", str(runs), *QUIET, "--data.data_dir", str(data), "--data.download", "false",
            "--data.val_size", "100", "--data.batch_size", "50", "--trainer.max_epochs", "1", *more]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """`python -m lit_opt ARGV` in this process: (exit code, what it printed to stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # the argument parser's own refusal
        code = exc.code
    return code, capsys.readouterr().err


def folders(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def process(*argv: str, cwd: Path) -> subprocess.Popen:
    """A real `python -m lit_opt` process, its output in cwd/out.txt."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = open(cwd / "out.txt", "w")
    return subprocess.Popen([sys.executable, "-m", "lit_opt", *argv], cwd=cwd, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, timeout: float = 60.0, what: str = "") -> None:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory) -> Path:
    """One finished 1-epoch MLP run folder (config.yaml, best.ckpt, last.ckpt)."""
    runs = tmp_path_factory.mktemp("finished")
    assert main(["fit", *small(data, runs, "--run.name", "mlp", "--run.test", "false")]) == 0
    return runs / "mlp"


# --- configuration (fit) ---------------------------------------------------------------------


@pytest.mark.parametrize("flag,value,choices", [("--model.optimizer", "adamz", "adam"),
                                                ("--model.net", "resnet9000", "lenet5"),
                                                ("--data.name", "imagenet", "fashion_mnist")])
def test_unknown_names_list_the_choices(data, tmp_path, capsys, flag, value, choices):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), flag, value)
    assert code == 2 and value in err and choices in err
    assert folders(tmp_path) == []


def test_a_misspelled_key_is_named(data, tmp_path, capsys):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), "--model.lrr", "0.1")
    assert code == 2 and "lrr" in err


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_a_learning_rate_out_of_range_is_refused(data, tmp_path, capsys, value):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), "--model.lr", value)
    assert code == 2 and "lr must be a number in (0, inf)" in err
    assert folders(tmp_path) == []


def test_a_learning_rate_of_1e9_diverges_at_the_first_step(data, tmp_path, capsys):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), "--model.lr", "1e9")
    assert code == 1 and "diverged in epoch 1, step" in err


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_batch_size_below_one_is_refused(data, tmp_path, capsys, value):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), "--data.batch_size", value)
    assert code == 2 and "data.batch_size must be an integer >= 1" in err


def test_a_batch_size_larger_than_the_set_names_the_largest_allowed(data, tmp_path, capsys):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), "--data.batch_size", "1000000000")
    # 600 training images less the 100 held out for validation.
    assert code == 2 and "largest allowed is 500" in err
    assert folders(tmp_path) == []


@pytest.mark.parametrize("flag,value,words", [("--model.dropout", "1.5", "dropout"),
                                              ("--model.weight_decay", "-1", "weight_decay")])
def test_regularization_out_of_range_is_refused(data, tmp_path, capsys, flag, value, words):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), flag, value)
    assert code == 2 and words in err


def test_momentum_above_one_is_refused(data, tmp_path, capsys):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), "--model.optimizer", "momentum",
                        "--model.optimizer_args", "{momentum: 2}")
    assert code == 2 and "momentum" in err


def test_a_train_size_larger_than_the_set_names_the_largest_allowed(data, tmp_path, capsys):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), "--data.train_size", "100000")
    assert code == 2 and "data.train_size (100000)" in err and "largest allowed is 500" in err
    assert folders(tmp_path) == []


def test_a_validation_size_of_zero_says_it_trains_without_validation_and_a_negative_one_is_refused(
        data, tmp_path, capsys):
    """val_size 0 was refused; it is now the fast recipes' explicit "no validation split", said
    at the start, with the test scored on last.ckpt (a run has no best.ckpt without it)."""
    code, err = run_cli(capsys, "fit", *small(data, tmp_path, "--run.name", "all"), "--data.val_size", "0")
    assert code == 0 and "data.val_size 0: no validation split" in err
    assert not (tmp_path / "all" / "best.ckpt").exists() and (tmp_path / "all" / "last.ckpt").exists()
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), "--data.val_size", "-1")
    assert code == 2 and "data.val_size must be an integer >= 0" in err


def test_zero_epochs_makes_a_run_folder_without_a_checkpoint(data, tmp_path, capsys):
    code, _ = run_cli(capsys, "fit", *small(data, tmp_path, "--run.name", "none"), "--trainer.max_epochs", "0")
    assert code == 0 and not (tmp_path / "none" / "last.ckpt").exists()


def test_config_file_errors_name_the_file(data, tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  lr: [0.1\n")
    code, err = run_cli(capsys, "fit", *small(data, tmp_path / "runs"), "--config", str(broken))
    assert code == 2 and "broken.yaml" in err and "line" in err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("modle:\n  lr: 0.1\n")
    code, err = run_cli(capsys, "fit", *small(data, tmp_path / "runs"), "--config", str(unknown))
    assert code == 2 and "modle" in err
    code, err = run_cli(capsys, "fit", *small(data, tmp_path / "runs"), "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in err
    assert folders(tmp_path / "runs") == []


@pytest.mark.parametrize("args,words", [
    (["--model.optimizer", "adam", "--model.optimizer_args", "{momentum: 0.9}"], "momentum"),
    (["--model.optimizer", "sam", "--model.optimizer_args", "{base: adamz}"], "adamz"),
    (["--model.net_args", "{foo: 1}"], "foo")])
def test_unknown_optimizer_and_net_options_are_named(data, tmp_path, capsys, args, words):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path), *args)
    assert code == 2 and words in err


# --- data ------------------------------------------------------------------------------------


def test_an_empty_data_folder_names_the_folder_and_the_files_expected(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(capsys, "fit", *small(empty, tmp_path / "runs"))
    assert code == 2 and str(empty) in err and "train-images-idx3-ubyte" in err
    assert folders(tmp_path / "runs") == []


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_a_truncated_mnist_file_is_refused_before_training(data, tmp_path, capsys, name):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    path = copy / "MNIST" / "raw" / name
    path.write_bytes(path.read_bytes()[:-100])
    code, err = run_cli(capsys, "fit", *small(copy, tmp_path / "runs"))
    assert code == 2 and str(path) in err and "truncated" in err
    assert folders(tmp_path / "runs") == []  # refused before a run folder was left behind


def image_folder(root: Path, classes: dict[str, int], size=(8, 8)) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, n in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def folder_fit(folder: Path, runs: Path) -> list[str]:
    return ["fit", "--run.root", str(runs), *QUIET, "--data.name", "image_folder", "--data.data_dir",
            str(folder), "--data.val_size", "2", "--data.batch_size", "2", "--trainer.max_epochs", "1",
            "--run.test", "false"]


def test_an_image_folder_with_mixed_sizes_is_refused(tmp_path, capsys):
    folder = image_folder(tmp_path / "pics", {"a": 3, "b": 3})
    Image.new("L", (9, 9)).save(folder / "train" / "b" / "odd.png")
    code, err = run_cli(capsys, *folder_fit(folder, tmp_path / "runs"))
    assert code == 2 and "odd.png" in err and "one size" in err


def test_a_text_file_named_png_is_named(tmp_path, capsys):
    folder = image_folder(tmp_path / "pics", {"a": 3, "b": 3})
    (folder / "train" / "a" / "notes.png").write_text("not a picture")
    code, err = run_cli(capsys, *folder_fit(folder, tmp_path / "runs"))
    assert code == 2 and "notes.png" in err and "not a picture" in err and "Traceback" not in err


def test_an_empty_class_folder_is_refused_naming_it(tmp_path, capsys):
    folder = image_folder(tmp_path / "pics", {"a": 3, "b": 3})
    (folder / "train" / "c").mkdir()
    code, err = run_cli(capsys, *folder_fit(folder, tmp_path / "runs"))
    assert code == 2 and str(folder / "train" / "c") in err and "no pictures" in err


def test_an_image_folder_with_one_class_is_refused(tmp_path, capsys):
    folder = image_folder(tmp_path / "pics", {"a": 6})
    code, err = run_cli(capsys, *folder_fit(folder, tmp_path / "runs"))
    assert code == 2 and "class" in err


def test_a_data_folder_is_only_read(data, tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    code, _ = run_cli(capsys, "fit", *small(data, tmp_path, "--run.test", "false"))
    assert code == 0
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before  # nothing written there


# --- checkpoints -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad(finished_run, tmp_path_factory):
    return bad_checkpoints(finished_run / "last.ckpt", tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("name", ["truncated", "empty", "random", "runs_code", "bare_state_dict",
                                  "a_tensor", "other_model"])
@pytest.mark.parametrize("command", ["test", "validate", "predict", "fit"])
def test_bad_and_foreign_checkpoints_are_refused_before_data_loads(bad, tmp_path, capsys, name, command):
    path, words = bad[name]
    missing = tmp_path / "no_data"  # a command that got as far as loading data would say so instead
    code, err = run_cli(capsys, command, "--ckpt_path", str(path), "--data.data_dir", str(missing),
                        "--run.root", str(tmp_path / "runs"), *QUIET)
    assert code == 2 and str(path) in err
    assert any(w in err for w in words.split("|")), err
    assert not (path.parent / "code_ran").exists()
    assert folders(tmp_path / "runs") == [] and not missing.exists()


def test_a_foreign_lightning_checkpoint_is_refused_clearly(tmp_path, capsys):
    import lightning as L

    class Other(L.LightningModule):
        def __init__(self, width: int = 3):
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(2, width)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    from torch.utils.data import DataLoader, TensorDataset

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, max_steps=1)
    trainer.fit(Other(), DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=4))
    path = tmp_path / "other.ckpt"
    trainer.save_checkpoint(path)
    code, err = run_cli(capsys, "test", "--ckpt_path", str(path), "--run.root", str(tmp_path / "runs"), *QUIET)
    assert code == 2 and str(path) in err and "another kind of model" in err
    assert "Parsing of ckpt_path" not in err


def test_a_typed_model_setting_that_differs_from_the_checkpoint_is_refused(finished_run, data, capsys):
    for command in ("fit", "test"):
        code, err = run_cli(capsys, command, "--ckpt_path", str(finished_run / "last.ckpt"),
                            "--model.net", "lenet5", *QUIET)
        assert code == 2 and "model.net: 'lenet5' (the checkpoint has 'mlp')" in err
    # The same value as the checkpoint, or a value nobody typed, is fine.
    code, err = run_cli(capsys, "test", "--ckpt_path", str(finished_run / "best.ckpt"), "--model.net", "mlp",
                        *QUIET)
    assert code == 0, err


def test_malicious_pickles_are_refused_by_every_command_and_run_nothing(finished_run, tmp_path, capsys):
    marker = tmp_path / "code_ran"
    ckpt = torch.load(finished_run / "last.ckpt", weights_only=True)
    inside = tmp_path / "inside.ckpt"
    torch.save({**ckpt, "payload": RunsCode(marker)}, inside)
    bare = tmp_path / "bare.ckpt"
    torch.save(RunsCode(marker), bare)
    picture = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(picture)
    for path in (inside, bare):
        for command in ("test", "validate", "predict", "fit"):
            code, err = run_cli(capsys, command, "--ckpt_path", str(path), "--run.root", str(tmp_path / "runs"),
                                *QUIET)
            assert code == 2 and "refused" in err
        code, err = run_cli(capsys, "classify", "--ckpt_path", str(path), str(picture))
        assert code == 2 and "refused" in err
    assert not marker.exists()


def shared_run(finished_run: Path, root: Path, callbacks) -> Path:
    """A run folder as someone could share it: a clean best.ckpt, a notes.py whose import leaves
    a marker file, and a config.yaml that names a callback defined in notes.py."""
    import yaml

    folder = root / "checkpoints" / "shared_run"
    folder.mkdir(parents=True)
    (root / "checkpoints" / "__init__.py").touch()
    (folder / "__init__.py").touch()
    shutil.copy(finished_run / "best.ckpt", folder / "best.ckpt")
    (folder / "notes.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(root / 'code_ran')!r}).touch()\n"
        "from lightning.pytorch.callbacks import Callback\n"
        "class Note(Callback):\n    pass\n")
    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    config["trainer"]["callbacks"] = callbacks
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.mark.parametrize("callbacks", [[{"class_path": "checkpoints.shared_run.notes.Note"}],
                                       ["checkpoints.shared_run.notes.Note"]],
                         ids=["class_path", "dotted_string"])
def test_a_run_folder_config_that_names_code_is_not_used_by_itself(finished_run, tmp_path, capsys, monkeypatch,
                                                                    callbacks):
    folder = shared_run(finished_run, tmp_path, callbacks)
    for name in [m for m in sys.modules if m == "checkpoints" or m.startswith("checkpoints.")]:
        monkeypatch.delitem(sys.modules, name)  # a module imported by an earlier case would not run again
    # From the folder holding checkpoints/, as the catalogue found it: importable from there.
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for command in ("test", "validate", "predict", "fit"):
        code, err = run_cli(capsys, command, "--ckpt_path", "checkpoints/shared_run/best.ckpt", *QUIET)
        assert code == 2, err
        assert "names code" in err or "names a class" in err
        assert f"--config {folder / 'config.yaml'}" in err  # it says how to use a config the user trusts
        assert not (tmp_path / "code_ran").exists()
    # The control: the same folder's config named explicitly does import (and so run) notes.py.
    run_cli(capsys, "test", "--config", "checkpoints/shared_run/config.yaml", "--ckpt_path",
            "checkpoints/shared_run/best.ckpt", *QUIET)
    assert (tmp_path / "code_ran").exists()


# --- pictures (classify) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    digit = Image.new("L", (28, 28))
    digit.paste(255, (10, 4, 16, 24))
    digit.save(folder / "good.png")
    Image.new("L", (1, 1)).save(folder / "one_pixel.png")
    Image.new("L", (50, 50), 255).save(folder / "white.png")
    Image.new("L", (50, 50), 0).save(folder / "black.png")
    digit.resize((5000, 5000)).save(folder / "huge.png")
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((255, 255, 255, 255), (15, 5, 25, 35))
    rgba.save(folder / "rgba.png")
    Image.fromarray(np.asarray(digit, dtype=np.uint16) * 257).save(folder / "grey16.png")  # 16-bit grey
    digit.save(folder / "digit.gif")
    (folder / "with space é").mkdir()
    digit.save(folder / "with space é" / "ünïcode digit.png")
    (folder / "text.jpg").write_text("this is text")
    # PIL refuses to decode more than 2 x 89.5 million pixels: a one-bit PNG of 14000 x 14000
    # is 24 MB of pixels as a file of a few kB.
    Image.new("1", (14000, 14000)).save(folder / "bomb.png", optimize=True)
    return folder


def run_classify(capsys, ckpt: Path, *files) -> tuple[int, list[dict]]:
    code = main(["classify", "--ckpt_path", str(ckpt), *map(str, files), "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", ["one_pixel.png", "white.png", "black.png", "text.jpg", "with space é"])
def test_pictures_that_cannot_be_classified_get_their_own_error(finished_run, pictures, capsys, name):
    code, results = run_classify(capsys, finished_run / "best.ckpt", pictures / name, pictures / "good.png")
    assert code == 0  # the good picture was classified
    assert "error" in results[0] and str(pictures / name) in results[0]["error"]
    assert "predictions" in results[1]


@pytest.mark.parametrize("name", ["huge.png", "rgba.png", "grey16.png", "digit.gif", "with space é/ünïcode digit.png"])
def test_unusual_but_valid_pictures_are_classified(finished_run, pictures, capsys, name):
    code, results = run_classify(capsys, finished_run / "best.ckpt", pictures / name)
    assert code == 0 and len(results[0]["predictions"]) == 10


def test_a_decompression_bomb_is_one_picture_error_and_the_others_are_classified(finished_run, pictures, capsys):
    code, results = run_classify(capsys, finished_run / "best.ckpt", pictures / "bomb.png", pictures / "good.png")
    assert code == 0
    assert "too large to decode safely" in results[0]["error"] and "predictions" in results[1]


def test_two_hundred_pictures_in_one_call(finished_run, pictures, tmp_path, capsys):
    files = []
    for i in range(200):
        files.append(tmp_path / f"{i}.png")
        shutil.copy(pictures / "good.png", files[-1])
    code, results = run_classify(capsys, finished_run / "best.ckpt", *files)
    assert code == 0 and len(results) == 200 and all("predictions" in r for r in results)


# --- interruption, durability, concurrency -----------------------------------------------------


def slow_fit(data: Path, root, name: str, *more: str) -> list[str]:
    """A run of many small batches, long enough to be interrupted mid-epoch by a signal."""
    return ["fit", "--run.root", str(root), "--run.name", name, *QUIET, "--data.data_dir", str(data),
            "--data.download", "false", "--data.val_size", "100", "--data.batch_size", "5",
            "--trainer.max_epochs", "6", "--run.test", "false", "--model.dropout", "0.2", *more]


def epoch_rows(run_dir: Path) -> list[dict]:
    import csv

    with (run_dir / "epochs.csv").open() as f:
        return list(csv.DictReader(f))


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> Path:
    """The reference: the slow run of 6 epochs, never interrupted."""
    tmp = tmp_path_factory.mktemp("whole")
    assert main(slow_fit(data, tmp / "runs", "whole")) == 0
    return tmp / "runs" / "whole"


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_epoch_saves_the_step_and_the_resume_matches_an_uninterrupted_run(
        data, tmp_path, uninterrupted, sig, code):
    proc = process(*slow_fit(data, tmp_path / "runs", "run"), cwd=tmp_path)
    run_dir = tmp_path / "runs" / "run"
    # After epoch 0 (100 batches an epoch, 6 epochs): its row and last.ckpt are written, so the
    # stop lands at a batch of a later epoch, long before the end on any machine.
    wait_for(lambda: (run_dir / "epochs.csv").exists() and (run_dir / "last.ckpt").exists(),
             what="the first epoch")
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=60) == code
    out = (tmp_path / "out.txt").read_text()
    assert f"Stopped by {signal.Signals(sig).name} in epoch " in out
    assert "Resume with:" in out and "last.ckpt" in out
    step = load(run_dir / "last.ckpt")["global_step"]
    assert 100 < step < 600 and step % 100 != 0  # the current step, not an epoch's start
    # Resume in this process (the run's own config.yaml is plain settings: used by itself).
    assert main(["fit", "--ckpt_path", str(run_dir / "last.ckpt"), *QUIET]) == 0
    resumed, whole = load(run_dir / "last.ckpt"), load(uninterrupted / "last.ckpt")
    assert resumed["global_step"] == whole["global_step"] == 600
    for key, value in whole["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    # The logs describe the whole training: the interrupted epoch's loss and accuracy are the
    # uninterrupted run's, each epoch once.
    rows, reference = epoch_rows(run_dir), epoch_rows(uninterrupted)
    assert [r["epoch"] for r in rows] == [str(e) for e in range(6)]
    for got, want in zip(rows, reference):
        for key in ("step", "train/loss", "train/acc", "val/loss", "val/acc"):
            assert float(got[key]) == pytest.approx(float(want[key]), rel=1e-6), (got["epoch"], key)


def test_sigterm_stops_a_sweep_with_143_and_the_rerun_resumes(data, tmp_path):
    out = tmp_path / "study"
    study = ["sweep", "--param", "model.lr", "0.05,0.1", "--out", str(out), *QUIET, "--data.data_dir", str(data),
             "--data.download", "false", "--data.val_size", "100", "--data.batch_size", "5",
             "--trainer.max_epochs", "8"]
    proc = process(*study, cwd=tmp_path)
    # The first trial past its first epoch (100 batches each, 8 epochs): stopped mid-trial.
    wait_for(lambda: any(out.glob("*/last.ckpt")), what="the first trial's first epoch")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert "Study stopped by SIGTERM" in (tmp_path / "out.txt").read_text()
    assert not list(out.glob("*/summary.json"))  # the first trial was stopped, not finished
    assert main(study) == 0  # the rerun resumes it and runs the other
    assert len(list(out.glob("*/summary.json"))) == 2


def test_sigkill_at_random_moments_leaves_checkpoints_that_load_and_no_temp_file_after_a_restart(data, tmp_path):
    rng = np.random.default_rng(0)
    run_dir = tmp_path / "runs" / "run"
    kills = 0
    for _ in range(2):
        resume = (run_dir / "last.ckpt").exists()
        args = ["fit", "--ckpt_path", str(run_dir / "last.ckpt"), *QUIET] if resume else slow_fit(
            data, tmp_path / "runs", "run", "--trainer.max_epochs", "20")
        proc = process(*args, cwd=tmp_path)
        wait_for(lambda: (run_dir / ".lock").exists() or proc.poll() is not None, what="the run to start")
        time.sleep(float(rng.uniform(0.3, 1.5)))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        if not (run_dir / "last.ckpt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # killed before the first checkpoint: start again
            continue
        for ckpt in run_dir.glob("*.ckpt"):
            assert load(ckpt)["global_step"] > 0  # every checkpoint a kill left loads
    assert kills >= 1
    if not (run_dir / "last.ckpt").exists():  # both kills came before the first checkpoint
        assert main(slow_fit(data, tmp_path / "runs", "run", "--trainer.max_epochs", "1")) == 0
    # A kill between write and rename leaves a hidden temp file; the next start removes it.
    stale = run_dir / ".last.ckpt.tmp999999"
    stale.write_bytes(b"half a checkpoint")
    epochs = str(load(run_dir / "last.ckpt")["epoch"] + 2)  # one more epoch than the checkpoint holds
    assert main(["fit", "--ckpt_path", str(run_dir / "last.ckpt"), *QUIET, "--trainer.max_epochs", epochs]) == 0
    assert not stale.exists()


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    ok = shutil.which("mount") and os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0
    return bool(ok)


def test_a_full_disk_exits_74_with_a_message_and_leaves_existing_runs_intact(data, tmp_path, capsys, monkeypatch):
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "3m")
    try:
        existing = disk / "runs" / "earlier"
        existing.mkdir(parents=True)
        (existing / "best.ckpt").write_bytes(b"x" * 100_000)
        if mounted:  # a real small file system, nearly full
            (disk / "filler").write_bytes(b"\0" * 2_300_000)
        else:  # no mount allowed here: only the write call is stubbed to fail as a full disk does
            import errno

            from lightning.pytorch.plugins.io import TorchCheckpointIO

            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", full)
        code, err = run_cli(capsys, "fit", *small(data, disk / "runs", "--trainer.max_epochs", "3"))
        assert code == 74, err
        assert "disk is full" in err or "most often because the disk is full" in err
        assert "Traceback" not in err
        assert (existing / "best.ckpt").read_bytes() == b"x" * 100_000
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_failed_save_leaves_no_log_row_without_a_checkpoint(data, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["fit", *small(data, runs, "--run.name", "r", "--run.test", "false")]) == 0
    run_dir = runs / "r"
    epoch0 = run_dir / "epoch0.ckpt.bak"
    shutil.copy(run_dir / "last.ckpt", epoch0)
    assert main(["fit", "--ckpt_path", str(run_dir / "last.ckpt"), *QUIET, "--trainer.max_epochs", "2"]) == 0
    assert [r["epoch"] for r in epoch_rows(run_dir)] == ["0", "1"]
    # As if epoch 1's checkpoint had never been written (disk full, killed before the rename):
    shutil.copy(epoch0, run_dir / "last.ckpt")
    assert main(["fit", "--ckpt_path", str(run_dir / "last.ckpt"), *QUIET, "--trainer.max_epochs", "2"]) == 0
    rows = epoch_rows(run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1"]  # epoch 1 once, from the training that was kept
    import csv

    with (run_dir / "metrics.csv").open() as f:
        epoch_rows_in_metrics = [r for r in csv.DictReader(f) if r.get("train/loss_epoch")]
    assert [r["epoch"] for r in epoch_rows_in_metrics] == ["0", "1"]


def test_a_learning_rate_of_1000_diverges_and_keeps_finite_weights(data, tmp_path, capsys):
    code, err = run_cli(capsys, "fit", *small(data, tmp_path, "--run.name", "d"), "--model.lr", "1000",
                        "--trainer.max_epochs", "2")
    assert code == 1 and "diverged" in err
    last = tmp_path / "d" / "last.ckpt"
    if last.exists():
        weights = {k: v for k, v in load(last)["state_dict"].items() if k.startswith("net.")}
        assert weights and all(torch.isfinite(v).all() for v in weights.values())
    assert (tmp_path / "d" / "diverged.json").exists()


def test_a_sweep_rerun_skips_finished_trials_and_resumes_an_interrupted_one(data, tmp_path, capsys):
    out = tmp_path / "s"
    study = ["sweep", "--param", "model.lr", "0.05,0.1", "--out", str(out), *QUIET,
             "--data.data_dir", str(data), "--data.download", "false", "--data.val_size", "100",
             "--data.batch_size", "50", "--trainer.max_epochs", "1"]
    assert main(study) == 0
    first, second = sorted(out.glob("*/summary.json"))
    stamp = first.stat().st_mtime_ns
    second.unlink()  # the second trial as if interrupted after its last checkpoint
    assert main(study) == 0
    assert first.stat().st_mtime_ns == stamp  # finished trial skipped, its files untouched
    assert second.exists() and "resuming from" in capsys.readouterr().out


def test_two_fits_with_the_same_name_the_second_is_refused(data, tmp_path, capsys):
    assert main(["fit", *small(data, tmp_path, "--run.name", "same", "--run.test", "false")]) == 0
    code, err = run_cli(capsys, "fit", *small(data, tmp_path, "--run.name", "same"))
    assert code == 2 and "exists already" in err


def test_a_second_resume_of_a_run_in_use_is_refused_until_its_holder_dies(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from lit_opt.runs import lock_run_dir; "
        f"lock_run_dir({str(run_dir)!r}); print('held', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = run_cli(capsys, "fit", "--ckpt_path", str(run_dir / "last.ckpt"), *QUIET,
                            "--trainer.max_epochs", "2", "--run.test", "false")
        assert code == 2 and f"lit_opt process {holder.pid}" in err and "in use" in err
        assert [r["epoch"] for r in epoch_rows(run_dir)] == ["0"]  # nothing written by the refused one
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock with the process
        holder.wait()
    assert main(["fit", "--ckpt_path", str(run_dir / "last.ckpt"), *QUIET, "--trainer.max_epochs", "2",
                 "--run.test", "false"]) == 0


def test_resuming_a_run_validated_twice_an_epoch_keeps_its_logs_and_one_row_per_epoch(data, tmp_path):
    import csv

    runs = tmp_path / "runs"
    assert main(["fit", *small(data, runs, "--run.name", "v", "--run.test", "false"), "--trainer.max_epochs", "2",
                 "--trainer.val_check_interval", "0.5"]) == 0
    run_dir = runs / "v"
    with (run_dir / "metrics.csv").open() as f:
        before = list(csv.DictReader(f))
    assert main(["fit", "--ckpt_path", str(run_dir / "last.ckpt"), *QUIET, "--trainer.max_epochs", "3"]) == 0
    with (run_dir / "metrics.csv").open() as f:
        after = list(csv.DictReader(f))
    assert [(r["epoch"], r["step"]) for r in after[:len(before)]] == [(r["epoch"], r["step"]) for r in before]
    rows = epoch_rows(run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]  # each epoch once, none with blank losses
    assert all(r["train/loss"] for r in rows)


POPEN = "{class_path: subprocess.Popen, init_args: {args: 'touch MARKER', shell: true}}"


@pytest.mark.parametrize("section,field,value", [
    ("model", None, "{net: mlp, net_args: {x: " + POPEN + "}}"),   # a section as YAML text
    ("model", None, "other/model.yaml"),                          # a section as another file
    ("model", "net_args", "{x: " + POPEN + "}"),                  # a mapping field as YAML text
    ("model", "optimizer_args", "{a: " + POPEN + "}"),
    ("model", "scheduler_args", "sched.yaml"),
    ("model", "net_args", {"x": {"class_path": "subprocess.Popen"}}),
    ("data", "name", "mnist\nclass_path: subprocess.Popen"),
    ("trainer", "max_epochs", "{init_args: {}}"),
], ids=["model_text", "model_file", "net_args_text", "optimizer_args_text", "scheduler_args_file",
        "class_path_in_any", "class_words_in_text", "init_args_text"])
def test_a_found_config_with_code_hidden_in_strings_or_files_is_refused(finished_run, tmp_path, section, field,
                                                                        value):
    import yaml

    from lit_opt.errors import ConfigError
    from lit_opt.found_config import read_found_config

    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    if field is None:
        config[section] = value
    else:
        config[section][field] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config).replace("MARKER", str(tmp_path / "code_ran")))
    with pytest.raises(ConfigError, match="was not used"):
        read_found_config(path)


def test_a_checkpoint_whose_hyperparameters_hide_a_class_is_refused_and_runs_nothing(finished_run, tmp_path,
                                                                                      capsys):
    marker = tmp_path / "code_ran"
    good = torch.load(finished_run / "last.ckpt", weights_only=True)
    cases = {"text": {"optimizer_args": "{a: " + POPEN.replace("MARKER", str(marker)) + "}"},
             "mapping": {"net_args": {"hidden": {"class_path": "subprocess.Popen",
                                                 "init_args": {"args": f"touch {marker}", "shell": True}}}},
             "class_path": {"_class_path": "subprocess.Popen"},
             "instantiator": {"_instantiator": "subprocess.Popen"}}
    for name, change in cases.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save({**good, "hyper_parameters": {**good["hyper_parameters"], **change}}, path)
        for command in ("validate", "fit"):
            code, err = run_cli(capsys, command, "--ckpt_path", str(path), "--run.root", str(tmp_path / "runs"),
                                *QUIET)
            assert code == 2 and str(path) in err, (name, command, err)
    assert not marker.exists()
