"""Views are registered, not wired: the window shows every RunView in gui/views/; a reopened
run holds exactly the series the live run showed, step for step, and the gradient-norm view
draws them."""

from __future__ import annotations

import numpy as np

from tests.gui.conftest import small_config


def _points(item) -> int:
    x = item.getData()[0]
    return 0 if x is None else len(x)


def test_every_view_in_the_package_is_a_tab_in_its_order(make_window, tmp_path):
    from gui.views import view_classes
    from gui.views.diagnostics import DiagnosticsView

    window = make_window(tmp_path / "runs")
    classes = view_classes()
    assert DiagnosticsView in classes
    tabs = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert tabs[:len(classes)] == [cls.tab_title for cls in classes]
    assert [type(v) for v in window.views] == classes


def test_a_reopened_run_holds_what_the_live_run_showed_step_for_step(real_data, tmp_path, make_window, qtbot):
    from gui.records import RunRecord
    from gui.views.diagnostics import DiagnosticsView

    config = small_config(real_data, tmp_path / "runs", epochs=2, train_size=600, optimizer="sgd")
    window = make_window(tmp_path / "runs", config)
    window.start()
    with qtbot.waitSignal(window.run_finished, timeout=120_000) as blocker:
        pass
    live = blocker.args[0]
    assert live.status == "finished", window.message.text()
    reopened = RunRecord.from_folder(live.run_dir)
    reopened.load()

    assert set(live.steps) == set(reopened.steps) >= {"train/loss", "train/lr", "train/grad_norm"}
    assert reopened.elements == live.elements
    assert live.elements["train/grad_norm"] == ["dense 784->100", "dense 100->10"]
    for name in live.steps:
        x_live, y_live = live.step_series(name)
        x_disk, y_disk = reopened.step_series(name)
        np.testing.assert_array_equal(x_live, x_disk)
        # 600 images / 100 a batch, 2 epochs: every step; the per-layer updates every 25 steps
        # (--diagnostics.every), so only on step 0, in batch 1
        every = [1] if name in ("train/weight_norm", "train/update_norm", "train/update_ratio") else range(1, 13)
        assert list(x_live) == list(every), name
        if name == "time":  # seconds, a double written with 9 digits: rounding twice may move float32's last bit
            np.testing.assert_allclose(y_disk, y_live, rtol=1e-8)
        else:
            np.testing.assert_array_equal(np.float32(y_live), np.float32(y_disk))
    assert live.step_x == reopened.step_x
    np.testing.assert_array_equal(np.float32(live.step_loss), np.float32(reopened.step_loss))

    # The diagnostics view draws one gradient-norm curve per layer: the record's values.
    view = window.view(DiagnosticsView)
    window.tabs.setCurrentWidget(view)
    window.run_list.select(live)
    qtbot.waitUntil(lambda: len(view.curves["train/grad_norm"]) == 2
                    and _points(view.curves["train/grad_norm"][0]) == 12, timeout=10_000)
    x, y = live.step_series("train/grad_norm")
    for i, item in enumerate(view.curves["train/grad_norm"]):  # xData/yData: the values given, before the log axis
        np.testing.assert_array_equal(item.xData, x)
        np.testing.assert_allclose(item.yData, y[:, i], rtol=1e-6)
    assert all(layer in view.legend.text() for layer in live.elements["train/grad_norm"])


def test_the_optimizer_view_shows_the_learning_rate_each_step_used_and_muons_split(real_data, tmp_path,
                                                                                  make_window, qtbot):
    """A step schedule (halving every epoch) as applied, step by step, and Muon's split
    from the run's summary.json."""
    from gui.views.optimizer import OptimizerView

    config = small_config(real_data, tmp_path / "runs", epochs=2, train_size=300, optimizer="muon",
                          net_args={"hidden": [20, 20]}, scheduler="step",
                          scheduler_args={"step_size": 1, "gamma": 0.5})
    window = make_window(tmp_path / "runs", config)
    window.start()
    with qtbot.waitSignal(window.run_finished, timeout=120_000) as blocker:
        pass
    rec = blocker.args[0]
    assert rec.status == "finished", window.message.text()
    view = window.view(OptimizerView)
    window.run_list.select(rec)
    qtbot.waitUntil(lambda: _points(view.lr_curve) == 6, timeout=10_000)
    x, lr = view.lr_curve.xData, view.lr_curve.yData
    # Muon's lr 0.02 (the first group's), halved after each epoch of 3 batches: each batch
    # shows the rate its step used (the scheduler steps after the epoch's last batch).
    assert list(x) == [1, 2, 3, 4, 5, 6]
    assert list(lr) == [0.02, 0.02, 0.02, 0.01, 0.01, 0.01]
    assert not view.d_plot.isVisible()  # Muon estimates no step size of its own
    # The hidden 20x20 weight is Muon's; the first and last layers and the biases AdamW's.
    assert "muon: 3.weight ·" in view.info.text() + " ·" and "adamw: 1.weight" in view.info.text()


def test_a_run_saved_before_steps_csv_still_opens_with_its_logged_losses(tmp_path):
    """Runs from earlier versions have no steps.csv: their step losses come from metrics.csv
    (every log_every_n_steps, at Lightning's step numbering), their epochs from epochs.csv."""
    from gui.records import RunRecord

    run = tmp_path / "old-run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {net: mlp, optimizer: sgd, lr: 0.1}\ndata: {name: mnist}\n")
    (run / "metrics.csv").write_text("epoch,step,train/loss_step,val/acc\n0,49,0.9,\n0,99,0.5,\n0,99,,0.91\n")
    (run / "epochs.csv").write_text("epoch,step,train/loss,train/acc,val/loss,val/acc\n0,100,0.7,0.8,0.4,0.91\n")
    rec = RunRecord.from_folder(run)
    rec.load()
    assert list(rec.step_x) == [50.0, 100.0] and list(rec.step_loss) == [0.9, 0.5]
    assert list(rec.step_series("train/loss")[0]) == [50.0, 100.0]
    assert rec.epochs[0]["val/acc"] == 0.91 and rec.best_val_acc == 0.91


def test_the_histogram_heat_map_moves_each_steps_bins_onto_one_grid_as_shares():
    from gui.views.diagnostics import heat_map

    rows = [(1, [[0.0, 1.0, 0, 0, 5, 5]]),  # 10 values spread evenly over [0, 1]
            (2, [[0.0, 2.0, 0, 0, 0, 10]])]  # 10 values in [1, 2]
    image, lo, hi = heat_map(rows, 0, grid=4)  # cells [0, .5), [.5, 1), [1, 1.5), [1.5, 2]
    assert (lo, hi) == (0.0, 2.0)
    np.testing.assert_allclose(image, [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    assert heat_map([(1, [[0.0, 1.0, 0, 0, 0, 0]])], 0) is None  # nothing counted: nothing drawn
