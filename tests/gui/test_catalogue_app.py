"""The desktop app's rows of the catalogue of bad inputs and faults (shared/CATALOGUE.md; the
rest are in tests/test_catalogue.py): the real window resumes a run the command line
started, and refuses a shared run folder whose config.yaml names code, running none of it."""

from __future__ import annotations

import shutil

import torch
import yaml
from PySide6.QtCore import Qt

from lit_opt.cli import main
from tests.test_catalogue import QUIET, write_mnist


def cli_run(data, runs, *more) -> None:
    assert main(["fit", "--run.root", str(runs), "--run.name", "cli", *QUIET, "--data.data_dir", str(data),
                 "--data.download", "false", "--data.val_size", "100", "--data.batch_size", "50",
                 "--run.test", "false", *more]) == 0


def test_the_app_resumes_a_run_the_command_line_started(tmp_path, make_window, qtbot):
    data = write_mnist(tmp_path / "data")
    cli_run(data, tmp_path / "runs", "--trainer.max_epochs", "1")
    run_dir = tmp_path / "runs" / "cli"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["weights_only"] is True  # the CLI's key
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["trainer"]["max_epochs"] = 2  # one more epoch, as the config of the resumed run says
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))

    window = make_window(tmp_path / "runs")
    window.rescan()
    rec = window.run_list.record(run_dir)
    window.run_list.select(rec)
    with qtbot.waitSignal(window.run_finished, timeout=120_000) as blocker:
        qtbot.mouseClick(window.run_list.resume_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0].status == "finished", window.message.text()
    assert torch.load(run_dir / "last.ckpt", weights_only=True)["global_step"] == 20  # 2 epochs of 10 steps


def test_the_app_refuses_a_shared_run_whose_config_names_code(tmp_path, make_window, qtbot, monkeypatch):
    data = write_mnist(tmp_path / "data")
    cli_run(data, tmp_path / "made", "--trainer.max_epochs", "1")
    shared = tmp_path / "runs" / "shared_run"
    shutil.copytree(tmp_path / "made" / "cli", shared)
    (shared / "notes.py").write_text(f"from pathlib import Path\nPath({str(tmp_path / 'code_ran')!r}).touch()\n"
                                     "from lightning.pytorch.callbacks import Callback\n"
                                     "class Note(Callback):\n    pass\n")
    config = yaml.safe_load((shared / "config.yaml").read_text())
    config["trainer"]["callbacks"] = ["runs.shared_run.notes.Note"]
    (shared / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.syspath_prepend(str(tmp_path))  # runs/ importable, as checkpoints/ is from a working folder

    window = make_window(tmp_path / "runs")
    window.rescan()
    rec = window.run_list.record(shared)
    assert rec is not None  # viewing the run is safe: only its plain files are read
    window.run_list.select(rec)
    qtbot.mouseClick(window.run_list.resume_button, Qt.MouseButton.LeftButton)
    qtbot.wait(200)
    assert not window.is_running
    text = window.message.text()
    assert window.message.isVisible() and "names code" in text and "config.yaml" in text
    assert not (tmp_path / "code_ran").exists()
