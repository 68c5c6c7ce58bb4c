"""Comparing runs in the Curves tab: labels from the settings that differ, only ticked runs,
x axes, TensorBoard's smoothing, seed groups as mean +- std, the crosshair and export.

Runs here are records filled through the same `add_steps`/`add_epoch` calls the live stream
and the run folders use; every expected number is computed in the test from the rows given.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from gui import comparison
from gui.records import RunRecord
from gui.views.curves import CurvesView

BATCHES, EPOCHS, BATCH_SIZE, N_TRAIN = 5, 3, 10, 45  # the last batch of an epoch holds 5 images


def run(name: str, seed: int = 0, lr: float = 1e-3, optimizer: str = "adam", data: str = "mnist",
        net: str = "mlp", root: str = "/tmp/runs") -> RunRecord:
    rec = RunRecord(Path(root) / name, {
        "seed_everything": seed, "model": {"optimizer": optimizer, "lr": lr, "net": net},
        "data": {"name": data, "batch_size": BATCH_SIZE}, "run": {"name": name, "root": root}})
    rows = []
    for e in range(EPOCHS):
        for b in range(BATCHES):
            n = e * BATCHES + b + 1
            rows.append({"batches": n, "step": n, "epoch": e, "batch": b, "time": 0.1 * n + 0.05 * e,
                         "train/loss": 2.0 / n + 0.1 * seed})
    rec.add_steps(rows)
    for e in range(EPOCHS):
        rec.add_epoch({"epoch": e, "step": (e + 1) * BATCHES, "val/loss": 1.0 / (e + 1),
                       "val/acc": 0.7 + 0.1 * e + 0.01 * seed, "train/samples_per_sec": N_TRAIN / 0.5,
                       "train/epoch_time": 0.5})
    return rec


def test_labels_name_exactly_the_settings_that_differ():
    # The cases: an MLP and a LeNet-5 both "sgd lr 0.1"; adam on MNIST and Fashion-MNIST.
    mlp, lenet = run("a", optimizer="sgd", lr=0.1), run("b", optimizer="sgd", lr=0.1, net="lenet5")
    assert comparison.differing_keys([mlp, lenet]) == ["model.net"]
    assert [comparison.label(r, ["model.net"]) for r in (mlp, lenet)] == ["net=mlp", "net=lenet5"]
    adam_m, adam_f, sgd = run("c"), run("d", data="fashion_mnist"), run("e", optimizer="sgd", lr=0.1)
    keys = comparison.differing_keys([adam_m, adam_f, sgd])
    assert keys == ["model.optimizer", "model.lr", "data.name"]
    assert comparison.label(adam_f, keys) == "opt=adam lr=0.001 data=fashion_mnist"
    # Where the runs live and what they are called never tells them apart.
    twin = run("f", root="/elsewhere")
    assert comparison.differing_keys([adam_m, twin]) == []
    assert comparison.label(twin, []) == "f"
    # The seed differs: it is named, last.
    assert comparison.differing_keys([adam_m, run("g", seed=1, data="fashion_mnist")]) == ["data.name",
                                                                                         "seed_everything"]


def test_runs_that_differ_only_in_their_seed_are_one_group():
    a0, a1, a2, b0 = run("a0"), run("a1", seed=1), run("a2", seed=2), run("b0", lr=0.01)
    groups = comparison.seed_groups([a0, b0, a1, a2])
    assert [[r.name for r in g] for g in groups] == [["a0", "a1", "a2"], ["b0"]]
    assert comparison.group_label(groups[0], comparison.differing_keys([a0, b0, a1, a2])) == "lr=0.001 (3 seeds)"
    # the same seed twice is not a seed replicate: each stays itself
    again = run("again")
    groups = comparison.seed_groups([a0, again])
    assert len(groups) == 2 and groups[0][0] is a0 and groups[1][0] is again


def _tensorboard(values, weight):
    """TensorBoard's smoothing, in its closed form: sum_i w^(n-i) (1-w) x_i / (1 - w^n) over the
    n finite values so far (a non-finite value is shown as it is and skipped)."""
    finite, out = [], []
    for v in values:
        if not np.isfinite(v):
            out.append(v)
            continue
        finite.append(v)
        n = len(finite)
        weights = (1 - weight) * weight ** np.arange(n - 1, -1, -1)
        out.append(float(np.dot(weights, finite)) / (1 - weight ** n))
    return np.array(out)


@pytest.mark.parametrize("weight", [0.0, 0.6, 0.95])
def test_smoothing_equals_tensorboards_formula(weight):
    values = np.random.default_rng(0).normal(1.0, 0.3, 200)
    values[[17, 90]] = [np.nan, np.inf]
    got = comparison.ema(values, weight)
    np.testing.assert_allclose(got, _tensorboard(values, weight), rtol=1e-12)
    # grown a piece at a time, as live rows arrive: the same values
    smoother = comparison.Smoother(weight)
    for end in (1, 50, 51, 200):
        part = smoother.extend(values[:end])
    np.testing.assert_allclose(part, got, rtol=0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        comparison.Smoother(1.0)


def test_the_x_axes_line_runs_up_by_step_epoch_samples_and_time():
    rec = run("a")
    steps = np.arange(1, EPOCHS * BATCHES + 1)
    epoch, batch = (steps - 1) // BATCHES, (steps - 1) % BATCHES
    np.testing.assert_array_equal(comparison.step_axis(rec, "step"), steps)
    np.testing.assert_allclose(comparison.step_axis(rec, "epoch"), epoch + (batch + 1) / BATCHES)
    # images seen: full batches of 10, the epoch's last one short (45 an epoch)
    np.testing.assert_array_equal(comparison.step_axis(rec, "samples"),
                                  epoch * N_TRAIN + np.minimum((batch + 1) * BATCH_SIZE, N_TRAIN))
    np.testing.assert_allclose(comparison.step_axis(rec, "time"), 0.1 * steps + 0.05 * epoch)
    # epoch metrics sit at their epoch's end on every axis (epochs counted from 1)
    assert list(comparison.epoch_axis(rec, "epoch", "val/acc")[0]) == [1, 2, 3]
    assert list(comparison.epoch_axis(rec, "step", "val/acc")[0]) == [5, 10, 15]
    assert list(comparison.epoch_axis(rec, "samples", "val/acc")[0]) == [45, 90, 135]
    np.testing.assert_allclose(comparison.epoch_axis(rec, "time", "val/acc")[0], [0.5, 1.05, 1.6])


@pytest.fixture
def view(qtbot):
    view = CurvesView()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    return view


def test_a_seed_group_is_drawn_as_its_mean_with_a_std_band(view):
    a0, a1, a2, b0 = run("a0"), run("a1", seed=1), run("a2", seed=2), run("b0", lr=0.01)
    view.set_runs([a0, a1, a2, b0])
    assert [e.label for e in view.entries] == ["lr=0.001 (3 seeds)", "lr=0.01"]
    view.x_axis.setCurrentIndex(list(comparison.AXES).index("epoch"))
    curves = view.items(a1)
    accs = np.array([[0.7 + 0.1 * e + 0.01 * s for e in range(EPOCHS)] for s in range(3)])
    np.testing.assert_allclose(curves["val acc"].y, accs.mean(0))
    np.testing.assert_allclose(curves["val acc +std"].y - curves["val acc"].y, accs.std(0, ddof=1))
    assert list(curves["val acc"].x) == [1, 2, 3]
    # the training loss: each seed smoothed as TensorBoard does, then averaged
    w = view.smoothing.value()
    losses = np.array([_tensorboard([2.0 / n + 0.1 * s for n in range(1, 16)], w) for s in range(3)])
    np.testing.assert_allclose(curves["train loss"].y, losses.mean(0))
    view.smoothing.setValue(0.0)
    np.testing.assert_allclose(view.items(a1)["train loss"].y, [2.0 / n + 0.1 for n in range(1, 16)])


def test_the_legend_hides_a_run_and_the_crosshair_reads_every_shown_curve(view):
    a, b = run("a"), run("b", lr=0.01)
    view.set_runs([a, b])
    view.smoothing.setValue(0.0)
    text = view.show_readout(7.5)  # step axis: step 7's loss, epoch 1's validation
    assert "lr=0.001: train loss 0.2857" in text and "val acc 0.7" in text and "lr=0.01" in text
    view.set_entry_visible("lr=0.01", False)
    assert not view.items(b)["train loss"].item.isVisible() and view.items(a)["train loss"].item.isVisible()
    assert "lr=0.01" not in view.show_readout(7.5)


def test_export_writes_the_plots_and_every_curves_data(view, tmp_path):
    a, b = run("a"), run("b", lr=0.01)
    view.set_runs([a, b])
    png, svg = view.export(tmp_path / "c.png"), view.export(tmp_path / "c.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "<svg" in svg.read_text()[:400] and "<path" in svg.read_text()
    with view.export(tmp_path / "c.csv").open() as f:
        rows = list(csv.DictReader(f))
    val = [(float(r["step"]), float(r["value"])) for r in rows if r["entry"] == "lr=0.01" and r["curve"] == "val acc"]
    assert val == [(5.0, 0.7), (10.0, pytest.approx(0.8)), (15.0, pytest.approx(0.9))]
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.csv"):
        view.export(tmp_path / "c.jpg")


def test_the_wheel_over_the_unfocused_axis_box_changes_nothing(view, qtbot):
    combo = view.x_axis
    view.legend.setFocus()
    qtbot.waitUntil(lambda: not combo.hasFocus())
    pos = QPointF(combo.rect().center())
    event = QWheelEvent(pos, QPointF(combo.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, -120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(combo, event)
    assert combo.currentData() == "step"


def test_only_ticked_runs_are_compared(tmp_path, make_window):
    window = make_window(tmp_path / "runs")
    a, b, c = run("a"), run("b", lr=0.01), run("c", optimizer="sgd", lr=0.1)
    for rec in (a, b, c):
        rec.loaded = True
        window.run_list.add(rec)
    window.run_list.select(c)  # selected, never ticked
    assert [e.runs for e in window.curves.entries if e.label == "train loss"] == [[c]]
    window.run_list.set_ticked(a)
    window.run_list.set_ticked(b)
    assert window.curves.title.text().startswith("comparing 2 runs")
    assert [e.runs for e in window.curves.entries] == [[a], [b]]
    window.run_list.set_ticked(a, False)  # one ticked: that run alone
    assert {r.name for e in window.curves.entries for r in e.runs} == {"b"}
