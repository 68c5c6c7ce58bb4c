"""Pause, single step and stop-while-paused from the app, on real (small) MNIST runs: the step
count holds while paused, Step advances it by exactly one, and the views are current."""

from __future__ import annotations

import time

import torch

from tests.gui.conftest import small_config


def _paused_at(window):
    from lit_opt.runs import stop_callback

    worker = window._worker
    return None if worker is None or worker.job is None else stop_callback(worker.job.trainer).paused_at


def _global_step(window) -> int:
    return window._worker.job.trainer.global_step


def _start_then_pause(real_data, root, make_window, qtbot, after: int, **model):
    """A 2-epoch run (30 batches an epoch) paused after at least `after` batches; (window, step held)."""
    window = make_window(root, small_config(real_data, root, epochs=2, train_size=1500, batch_size=50, **model))
    window.start()
    qtbot.waitUntil(lambda: window.running is not None and len(window.running.step_x) >= after, timeout=60_000)
    window.pause_button.click()
    qtbot.waitUntil(lambda: _paused_at(window) is not None, timeout=10_000)
    return window, _paused_at(window)


def test_pause_holds_the_step_count_and_step_advances_it_by_one(real_data, tmp_path, make_window, qtbot, pace):
    window, held = _start_then_pause(real_data, tmp_path / "runs", make_window, qtbot, after=5)
    assert window.pause_button.text() == "Continue" and window.step_button.isEnabled()
    qtbot.wait(400)
    assert _global_step(window) == held and _paused_at(window) == held  # nothing trains while paused
    qtbot.waitUntil(lambda: len(window.running.step_x) == held, timeout=5_000)  # the views have every step
    assert window.running.step_x[-1] == held
    assert "Paused at step" in window.status_line.text()
    for expected in (held + 1, held + 2):
        window.step_button.click()
        qtbot.waitUntil(lambda: _paused_at(window) == expected, timeout=10_000)
        qtbot.wait(200)
        assert _global_step(window) == expected
    window.pause_button.click()  # continue to the end
    with qtbot.waitSignal(window.run_finished, timeout=120_000) as blocker:
        pass
    rec = blocker.args[0]
    assert rec.status == "finished" and len(rec.step_x) == 60
    assert torch.load(rec.run_dir / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 60


def test_stop_while_paused_keeps_a_checkpoint_at_the_paused_step(real_data, tmp_path, make_window, qtbot, pace):
    window, held = _start_then_pause(real_data, tmp_path / "runs", make_window, qtbot, after=3)
    t0 = time.perf_counter()
    window.stop()
    with qtbot.waitSignal(window.run_finished, timeout=30_000) as blocker:
        pass
    assert time.perf_counter() - t0 < 5
    rec = blocker.args[0]
    assert rec.status == "stopped" and f"step {held}" in window.message.text()
    assert torch.load(rec.run_dir / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == held
    assert window.pause_button.text() == "Pause" and not window.pause_button.isEnabled()


def test_more_epochs_continue_a_finished_run_and_its_curves(real_data, tmp_path, make_window, qtbot):
    from lit_opt.jobs import prepare_fit

    root = tmp_path / "runs"
    job = prepare_fit(small_config(real_data, root, epochs=1))  # 2000 images, 20 batches
    job.run()
    window = make_window(root)
    rec = window.run_list.record(job.run_dir)
    window.run_list.select(rec)
    assert rec.status == "finished" and len(rec.step_x) == 20
    window.more_epochs(rec, 1)
    with qtbot.waitSignal(window.run_finished, timeout=120_000) as blocker:
        pass
    assert blocker.args[0] is rec and rec.status == "finished", window.message.text()
    assert list(rec.step_x) == [float(i) for i in range(1, 41)]  # the same curve, continued
    assert [e["epoch"] for e in rec.epochs] == [0, 1]
    assert torch.load(rec.run_dir / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 40


def test_a_learning_rate_typed_while_paused_applies_from_the_next_step_and_is_marked(
        real_data, tmp_path, make_window, qtbot, pace):
    import yaml

    base = 0.002
    window, held = _start_then_pause(real_data, tmp_path / "runs", make_window, qtbot, after=3, lr=base)
    rec = window.running
    assert window.steer_box.isEnabled() and window.steer_box.lr_label.text() == "lr"  # no schedule: a rate
    window.steer_box.lr.setText(f"{base / 4:g}")
    window.steer_box.apply_button.click()
    window.step_button.click()  # the next batch takes the changed rate
    qtbot.waitUntil(lambda: _paused_at(window) == held + 1, timeout=10_000)
    qtbot.waitUntil(lambda: len(rec.step_x) == held + 1, timeout=5_000)
    assert yaml.safe_load((rec.run_dir / "config.yaml").read_text())["run"]["steering"] == [
        {"step": held, "lr_factor": 0.25}]
    assert f"Changed from step {held}: lr x0.25" in window.message.text()
    window.curves.refresh()
    assert window.curves.marks() == [(float(held + 1), "lr x0.25")]  # at the first batch that used it
    window.steer_box.momentum.setText("1.5")  # refused in the box, naming what is allowed
    window.steer_box.apply_button.click()
    assert "momentum must be in [0, 1)" in window.message.text()
    window.stop()
    with qtbot.waitSignal(window.run_finished, timeout=30_000):
        pass
