"""The standalone Landscape view (gui/views/landscape.py): it asks lit_opt.landscape for the
selected run or two ticked runs, in its own thread, and draws the line or the plane."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.test_hessian import run_checkpoint


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two linear-net checkpoints whose recorded data folder is a small MNIST."""
    from tests.test_catalogue import write_mnist

    data = write_mnist(tmp_path_factory.mktemp("mnist"))
    out = []
    for seed in (0, 1):
        folder = tmp_path_factory.mktemp(f"run{seed}")
        path = run_checkpoint(folder / "best.ckpt", "linear", seed)
        ckpt = torch.load(path, weights_only=True)
        ckpt["datamodule_hyper_parameters"]["data_dir"] = str(data)
        torch.save(ckpt, path)
        out.append(SimpleNamespace(name=f"run{seed}", best_checkpoint=lambda p=path: p))
    return out


def _compute(view, qtbot):
    with qtbot.waitSignal(view.computed, timeout=60000) as got:
        view.compute()
    view.wait()
    qtbot.waitUntil(lambda: view.compute_button.isEnabled())
    return got.args[0]


def test_a_line_between_two_ticked_runs_and_a_plane_around_one(qtbot, runs):
    from gui.views.landscape import LandscapeView

    view = LandscapeView()
    qtbot.addWidget(view)
    view.samples.setValue(100)
    view.mode.setCurrentText("line A -> B")
    view.show_runs(runs[0], [runs[0]])
    assert not view.compute_button.isEnabled() and "Tick two runs" in view.info.text()
    view.show_runs(runs[0], runs)
    view.steps.setValue(7)
    result = _compute(view, qtbot)
    assert result["about"]["mode"] == "line" and len(result["rows"]) == 7
    x, y = view.train_curve.getData()
    assert len(x) == 7 and np.allclose(y, [r["train_loss"] for r in result["rows"]])
    assert "100 of the 500 training images" in view.info.text()

    view.mode.setCurrentText("plane")
    view.steps.setValue(3)
    result = _compute(view, qtbot)
    assert result["about"]["mode"] == "plane" and view.image.image.shape == (3, 3)


def test_a_refusal_is_shown_as_its_message(qtbot, runs):
    from gui.views.landscape import LandscapeView

    view = LandscapeView()
    qtbot.addWidget(view)
    view.samples.setValue(100)
    view.show_runs(runs[0], [])  # line from init: these runs kept no init.pt
    result = _compute(view, qtbot)
    assert "no initial weights" in result["error"] and "no initial weights" in view.info.text()
