"""The real window trains real (small) MNIST runs; every view is checked against numbers
computed here, independently, from the run's checkpoint and data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QTimer

from tests.gui.conftest import small_config


def _finish(window, qtbot, timeout=120_000):
    with qtbot.waitSignal(window.run_finished, timeout=timeout) as blocker:
        pass
    return blocker.args[0]


def _load(ckpt: Path):
    from lit_opt.module import ClassifierModule

    return ClassifierModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()


def test_a_one_epoch_run_shows_its_checkpoints_weights_confusion_and_every_step(real_data, tmp_path,
                                                                                 make_window, qtbot):
    from lit_opt.artifacts import weight_images
    from lit_opt.data import ClassificationDataModule
    from lit_opt.nets import first_layer
    from gui.views.weights import grid_tile

    window = make_window(tmp_path / "runs", small_config(real_data, tmp_path / "runs"))
    qtbot.mouseClick(window.start_button, _left())
    rec = _finish(window, qtbot)
    assert rec.status == "finished", window.message.text()
    assert "Finished" in window.message.text()
    ckpt = rec.run_dir / "best.ckpt"
    model = _load(ckpt)

    # Weights view: exactly the checkpoint's first layer, one 28x28 tile per unit.
    ref = weight_images(first_layer(model.net), model.hparams.data_info["input_shape"]).numpy()
    assert ref.shape == (100, 28, 28)
    np.testing.assert_array_equal(window.weights.tiles, ref)
    shown = window.weights.image.image
    for k in (0, 37, 99):
        np.testing.assert_array_equal(grid_tile(shown, k, 100, (28, 28)), ref[k])
    limit = np.abs(ref).max()
    assert tuple(window.weights.colour_bar.levels()) == pytest.approx((-limit, limit))

    # Confusion view: the checkpoint's predictions on the validation split, computed here.
    dm = ClassificationDataModule("mnist", data_dir=str(real_data), val_size=500, train_size=2000)
    dm.setup("fit")
    images, labels = dm.val_set
    x, _ = dm.on_after_batch_transfer((images, labels), 0)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    expected = np.bincount(labels.numpy() * 10 + predicted.numpy(), minlength=100).reshape(10, 10)
    np.testing.assert_array_equal(window.confusion.matrix, expected)
    assert window.confusion.matrix.sum() == 500
    np.testing.assert_array_equal(window.confusion.image.image, expected)
    np.testing.assert_allclose(window.confusion.per_class, expected.diagonal() / expected.sum(1))

    # Curves: one point per training step (2000 images / 100 a batch), in step order.
    steps = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
    assert steps == 20
    items = window.curves.items(rec)
    x_raw, y_raw = items["train loss (raw)"].item.getData()
    assert list(x_raw) == list(range(1, 21)) and np.isfinite(y_raw).all()
    assert len(items["train loss"].item.getData()[0]) == 20
    assert list(items["val acc"].item.getData()[1]) == pytest.approx([rec.epochs[0]["val/acc"]])
    assert "epoch" in window.status_line.text() or "Finished" in window.status_line.text()


def test_stop_mid_epoch_then_resume_matches_an_uninterrupted_run(real_data, tmp_path, make_window, qtbot, pace):
    from lit_opt.jobs import prepare_fit

    # Dropout and L2 on: the resume must restore the random state and the penalty too.
    common = dict(epochs=2, train_size=1500, batch_size=50, dropout=0.25, l2=1e-4, optimizer="momentum")
    whole = prepare_fit(small_config(real_data, tmp_path / "whole", **common))
    whole.run()
    reference = torch.load(whole.run_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert reference["global_step"] == 60

    window = make_window(tmp_path / "runs", small_config(real_data, tmp_path / "runs", **common))
    window.start()
    qtbot.waitUntil(lambda: window.running is not None and len(window.running.step_x) >= 8, timeout=60_000)
    qtbot.mouseClick(window.stop_button, _left())
    rec = _finish(window, qtbot)
    assert rec.status == "stopped" and "last.ckpt" in window.message.text()
    stopped = torch.load(rec.run_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert 8 <= stopped["global_step"] < 30  # mid-epoch 0 (30 batches an epoch)
    assert len(rec.step_x) == stopped["global_step"]

    window.run_list.select(rec)
    qtbot.mouseClick(window.run_list.resume_button, _left())
    rec2 = _finish(window, qtbot)
    assert rec2 is rec and rec.status == "finished", window.message.text()
    resumed = torch.load(rec.run_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == reference["global_step"] == 60
    assert list(rec.step_x) == list(map(float, range(1, 61)))  # curves continued
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, atol=1e-6, rtol=0)

    # The run list also finds the headless run; ticking both compares them. Same settings and
    # seed: no setting tells them apart, so each is labelled by its run name.
    window.form._fields["run.root"].set_value(str(tmp_path / "whole"))
    window.rescan()
    other = window.run_list.record(whole.run_dir)
    assert other is not None and other.status == "finished"
    window.run_list.set_ticked(other)
    window.run_list.set_ticked(rec)
    assert sorted(e.label for e in window.curves.entries) == sorted([rec.name, other.name])
    assert len(window.curves.items(other)["val acc"].x) == 2  # read from epochs.csv


def test_closing_the_window_mid_run_stops_it_and_keeps_a_resumable_checkpoint(real_data, tmp_path,
                                                                               make_window, qtbot, pace):
    from lit_opt.jobs import prepare_fit

    window = make_window(tmp_path / "runs", small_config(real_data, tmp_path / "runs", batch_size=50))
    window.start()
    qtbot.waitUntil(lambda: window.running is not None and len(window.running.step_x) >= 5, timeout=60_000)
    rec = window.running
    window.close()
    assert window.isVisible()  # it waits for the run to stop first
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert not window.is_running and rec.status == "stopped"
    ckpt = rec.run_dir / "last.ckpt"
    assert 5 <= torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] < 40
    job = prepare_fit(rec.run_dir / "config.yaml", ckpt_path=str(ckpt))
    job.run()
    assert job.trainer.global_step == 40 and job.run_dir == rec.run_dir


def test_the_event_loop_keeps_ticking_and_stop_ends_the_run_quickly(real_data, tmp_path, make_window, qtbot):
    window = make_window(tmp_path / "runs", small_config(real_data, tmp_path / "runs", train_size=20000,
                                                         epochs=3, net_args={"hidden": "deep"}))
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    window.start()
    qtbot.waitUntil(lambda: window.running is not None and len(window.running.step_x) >= 1, timeout=60_000)
    timer.start()
    qtbot.wait(2500)  # training: steps arrive, curves redraw
    window.tabs.setCurrentIndex(1)  # tabs switch and the window resizes during training
    window.resize(1200, 800)
    qtbot.wait(500)
    timer.stop()
    gaps = np.diff(ticks)
    assert len(ticks) > 50
    assert gaps.max() < 0.5, f"largest event-loop gap {gaps.max():.3f} s"
    assert window.is_running, "the run should still be going"
    t0 = time.perf_counter()
    window.stop()
    _finish(window, qtbot, timeout=10_000)
    latency = time.perf_counter() - t0
    assert latency < 5.0
    print(f"\nevent-loop max gap {gaps.max() * 1000:.0f} ms (median {np.median(gaps) * 1000:.0f} ms), "
          f"stop latency {latency * 1000:.0f} ms")


def test_errors_appear_as_messages_in_the_window(tmp_path, make_window, qtbot):
    config = small_config(tmp_path / "no_data_here", tmp_path / "runs")
    config["data"]["download"] = False
    window = make_window(tmp_path / "runs", config)
    window.start()
    rec = _finish(window, qtbot)
    text = window.message.text()
    assert rec.status == "failed" and window.message.isVisible()
    assert "no_data_here" in text and "Traceback" not in text
    window.form._opt_fields["lr"].editor.setText("0")  # bad input: said before anything starts
    window.start()
    assert not window.is_running and "lr must be a number in (0, inf)" in window.message.text()


def _left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_a_run_without_a_validation_split_finishes_and_draws_its_training_curve(real_data, tmp_path,
                                                                                 make_window, qtbot):
    """data.val_size 0 (the fast recipes' setting): no validation pass, no best.ckpt; the
    window still shows every step and reports the run finished."""
    config = small_config(real_data, tmp_path / "runs")
    config["data"]["val_size"] = 0
    window = make_window(tmp_path / "runs", config)
    qtbot.mouseClick(window.start_button, _left())
    rec = _finish(window, qtbot)
    assert rec.status == "finished", window.message.text()
    assert (rec.run_dir / "last.ckpt").exists() and not (rec.run_dir / "best.ckpt").exists()
    items = window.curves.items(rec)
    x_raw, _ = items["train loss (raw)"].item.getData()
    assert list(x_raw) == list(range(1, 21))  # 2000 images, every one trains: 20 batches of 100
    val = items.get("val acc")
    assert val is None or val.item.getData()[0] is None or len(val.item.getData()[0]) == 0
