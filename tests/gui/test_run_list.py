"""The run list as people work with it: statuses, sorting, the filter, notes, copying a run's
settings into the form, and moving a run to the trash (never deleting it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PySide6.QtCore import Qt

from gui.records import RunRecord, folder_status
from gui.widgets.run_list import COLUMNS, RunList
from tests.gui.conftest import small_config

ROOT = Path(__file__).resolve().parents[2]


def saved_run(root: Path, name: str, *, epochs=(), summary=None, diverged=None, ckpt=False,
              optimizer="adam", lr=0.001) -> Path:
    """A run folder as lit_opt writes one: config.yaml, epochs.csv, and the files of its state."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"seed_everything": 0, "model": {"net": "mlp", "optimizer": optimizer, "lr": lr},
         "data": {"name": "mnist", "batch_size": 100}, "trainer": {"max_epochs": 3},
         "run": {"name": name, "root": str(root)}}))
    lines = ["epoch,step,train/loss,val/acc"] + [f"{e},{10 * (e + 1)},0.5,{acc}" for e, acc in enumerate(epochs)]
    (run / "epochs.csv").write_text("\n".join(lines) + "\n")
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    if diverged is not None:
        (run / "diverged.json").write_text(json.dumps({"epoch": 0, "step": 3, "message": diverged}))
    if ckpt:
        (run / "last.ckpt").write_bytes(b"not read here")
    return run


def test_a_saved_runs_status_comes_from_its_files(tmp_path):
    assert folder_status(saved_run(tmp_path, "done", epochs=[0.9], summary={"epochs": 1}, ckpt=True)) == "finished"
    assert folder_status(saved_run(tmp_path, "nan", diverged="Training diverged in epoch 1", ckpt=True)) == "diverged"
    assert folder_status(saved_run(tmp_path, "halfway", epochs=[0.9], ckpt=True)) == "stopped"
    assert folder_status(saved_run(tmp_path, "never", epochs=[])) == "failed"
    rec = RunRecord.from_folder(tmp_path / "nan")
    assert rec.status == "diverged" and "diverged in epoch 1" in rec.message


@pytest.fixture
def run_list(qtbot, tmp_path):
    runs = RunList()
    qtbot.addWidget(runs)
    runs.resize(700, 400)
    runs.show()
    folders = [saved_run(tmp_path, "adam-run-with-a-very-long-name-A", epochs=[0.91] * 9, summary={"epochs": 9},
                         ckpt=True),
               saved_run(tmp_path, "sgd-run", epochs=[0.95] * 10, summary={"epochs": 10}, ckpt=True,
                         optimizer="sgd", lr=0.1),
               saved_run(tmp_path, "adam-run-with-a-very-long-name-B", epochs=[0.5], ckpt=True, lr=0.01)]
    for folder in folders:
        runs.add(RunRecord.from_folder(folder))
    return runs


def _column(runs: RunList, col: int) -> list[str]:
    return [runs.tree.topLevelItem(i).text(col) for i in range(runs.tree.topLevelItemCount())]


def test_columns_sort_numbers_as_numbers_and_statuses_in_order(run_list):
    epochs = COLUMNS.index("epochs")
    run_list.tree.sortByColumn(epochs, Qt.SortOrder.AscendingOrder)
    assert _column(run_list, epochs) == ["1", "9", "10"]  # as text, "10" would come before "9"
    run_list.tree.sortByColumn(2, Qt.SortOrder.DescendingOrder)
    assert _column(run_list, 2) == ["0.9500", "0.9100", "0.5000"]
    run_list.tree.sortByColumn(1, Qt.SortOrder.AscendingOrder)
    assert _column(run_list, 1) == ["stopped (resumable)", "finished", "finished"]
    # full names stay in the tooltip, the cell elides in the middle where names differ at the end
    item = run_list.tree.topLevelItem(0)
    assert run_list.tree.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert item.text(0) in item.toolTip(0)


def test_the_filter_keeps_rows_holding_every_word(run_list):
    run_list.filter.setText("adam")
    assert sorted(r.name for r in run_list.shown()) == ["adam-run-with-a-very-long-name-A",
                                                        "adam-run-with-a-very-long-name-B"]
    run_list.filter.setText("adam resumable")
    assert [r.name for r in run_list.shown()] == ["adam-run-with-a-very-long-name-B"]
    run_list.tick_shown()
    assert [r.name for r in run_list.ticked()] == ["adam-run-with-a-very-long-name-B"]
    run_list.filter.clear()
    assert len(run_list.shown()) == 3


def test_a_note_is_saved_in_the_runs_folder_and_shown_again(run_list, qtbot):
    rec = run_list.records()[1]
    run_list.select(rec)
    assert run_list.note.isEnabled() and run_list.note.toPlainText() == ""
    run_list.note.setPlainText("lr 0.1 was too high: loss spikes at step 300")
    qtbot.waitUntil(lambda: (rec.run_dir / "note.txt").is_file(), timeout=3000)  # saved after a pause
    assert (rec.run_dir / "note.txt").read_text() == "lr 0.1 was too high: loss spikes at step 300"
    run_list.select(run_list.records()[0])
    assert run_list.note.toPlainText() == ""
    run_list.select(rec)
    assert run_list.note.toPlainText() == "lr 0.1 was too high: loss spikes at step 300"
    # switching runs saves at once, without waiting for the pause
    run_list.note.setPlainText("")
    run_list.select(run_list.records()[0])
    assert not (rec.run_dir / "note.txt").exists()  # an emptied note removes the file


def test_move_to_trash_moves_the_folder_and_keeps_everything(tmp_path, make_window):
    root = tmp_path / "runs"
    keep = saved_run(root, "keep-me", epochs=[0.9], summary={"epochs": 1}, ckpt=True)
    gone = saved_run(root, "trash-me", epochs=[0.9], summary={"epochs": 1}, ckpt=True)
    (gone / "note.txt").write_text("bad run")
    before = sorted(p.relative_to(gone) for p in gone.rglob("*"))
    window = make_window(root)
    rec = window.run_list.record(gone)
    window.run_list.select(rec)
    window.trash(rec)
    target = root / ".trash" / "trash-me"
    assert not gone.exists() and target.is_dir()
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before  # every file, as it was
    assert window.run_list.record(gone) is None and str(target) in window.message.text()
    window.rescan()
    assert [r.name for r in window.run_list.records()] == ["keep-me"]  # the trash is not a run
    # a second run of the same name goes beside it, never over it
    again = saved_run(root, "trash-me", epochs=[0.8])
    window.rescan()
    window.trash(window.run_list.record(again))
    assert (root / ".trash" / "trash-me-2" / "config.yaml").is_file() and target.is_dir()
    assert keep.is_dir()


def test_a_run_another_process_trains_in_is_not_moved(tmp_path, make_window):
    root = tmp_path / "runs"
    busy = saved_run(root, "busy", epochs=[0.9], ckpt=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "f.write('lit_opt process 1234'); f.flush(); print('locked', flush=True); time.sleep(60)"),
        str(busy / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        window = make_window(root)
        window.trash(window.run_list.record(busy))
        assert busy.is_dir() and not (root / ".trash").exists()
        assert "was not moved" in window.message.text() and "in use" in window.message.text()
    finally:
        holder.kill()
        holder.wait()


def test_copy_to_form_takes_the_runs_settings_but_not_its_name(tmp_path, make_window):
    root = tmp_path / "runs"
    run = saved_run(root, "sgd-variant", epochs=[0.9], summary={"epochs": 1}, optimizer="momentum", lr=0.03)
    window = make_window(root)
    window.run_list.select(window.run_list.record(run))
    window.run_list.copy_button.click()
    config = window.form.to_config()
    assert config["model"]["optimizer"] == "momentum" and float(config["model"]["lr"]) == 0.03
    assert config["trainer"]["max_epochs"] == 3
    assert not (config.get("run") or {}).get("name")  # Start makes a new folder
    assert "Copied sgd-variant" in window.message.text()


def test_statuses_after_divergence_and_a_message_that_goes_with_its_run(real_data, tmp_path, make_window, qtbot):
    root = tmp_path / "runs"
    other = saved_run(root, "other", epochs=[0.9], summary={"epochs": 1}, ckpt=True)
    # SGD at lr 1e4 on unnormalized logits: the loss is inf within a few steps
    window = make_window(root, small_config(real_data, root, optimizer="sgd", lr=1e4))
    window.start()
    with qtbot.waitSignal(window.run_finished, timeout=120_000) as blocker:
        pass
    rec = blocker.args[0]
    assert rec.status == "diverged" and "diverged in epoch 1" in window.message.text()
    row = window.run_list._items[str(rec.run_dir.resolve())]
    assert row.text(1) == "diverged" and "diverged in epoch 1" in row.toolTip(1)
    assert RunRecord.from_folder(rec.run_dir).status == "diverged"  # and so it reads back
    window.run_list.select(window.run_list.record(other))
    assert not window.message.isVisible()  # the diverged run's message went with it
