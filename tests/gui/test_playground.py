"""The playground animates several optimizers' paths, computed by lit_opt.toy."""

from __future__ import annotations

import numpy as np
import pytest

from gui.widgets.playground import Playground


@pytest.fixture
def playground(qtbot):
    widget = Playground()
    qtbot.addWidget(widget)
    widget.show()
    widget.set_ready()  # imports lit_opt.toy (torch) as the window does once loaded
    qtbot.waitUntil(lambda: not widget.is_animating(), timeout=20_000)
    return widget


def _drawn(item) -> int:
    x, _ = item.getData()
    return 0 if x is None else len(x)


def test_two_optimizers_animate_to_lit_opts_own_paths(playground, qtbot):
    from lit_opt import toy

    playground.function.setCurrentText("ill_bowl")
    playground.set_optimizers([("sgd", 0.035), ("adam", 0.3)])
    playground.steps.setValue(90)
    frames = []
    playground._timer.timeout.connect(lambda: frames.append([_drawn(i) for i in playground.path_items]))
    with qtbot.waitSignal(playground.animation_finished, timeout=20_000):
        playground.run()
    assert len(playground.path_items) == 2 and len(playground.loss_items) == 2
    # It animated: the paths grew over many frames, both at once.
    assert len(frames) >= 10 and frames[0][0] < frames[-1][0] == 91
    assert all(a == b for a, b in frames)
    for item, loss_item, (name, lr) in zip(playground.path_items, playground.loss_items,
                                           [("sgd", 0.035), ("adam", 0.3)]):
        ref = toy.run("ill_bowl", name, steps=90, lr=lr)
        x, y = item.getData()
        np.testing.assert_allclose(np.c_[x, y], ref.points)
        np.testing.assert_allclose(loss_item.yData, ref.losses, rtol=1e-12)  # getData(): log10


def test_clicking_chooses_the_start_and_x2_shows_the_seminar_example(playground, qtbot):
    playground.choose_start(1.0, -1.0)
    qtbot.waitUntil(lambda: not playground.is_animating(), timeout=20_000)
    for item in playground.path_items:
        x, y = item.getData()
        assert (x[0], y[0]) == (1.0, -1.0)
    playground._on_seminar()
    qtbot.waitUntil(lambda: not playground.is_animating(), timeout=20_000)
    no_lr, lr_01 = (item.getData() for item in playground.path_items)
    assert list(no_lr[0][:4]) == [5.0, -5.0, 5.0, -5.0]  # lr 1: bounces forever
    np.testing.assert_allclose(lr_01[0][:4], [5.0, 4.0, 3.2, 2.56])  # lr 0.1: x <- 0.8 x


def test_matrix_optimizers_are_not_offered(playground):
    """Muon acts on a net's weight matrices; a toy function's point has none."""
    from lit_opt import optim

    playground.set_optimizers([("adam", 0.1)])
    combo = playground.table.cellWidget(0, 0)
    offered = [combo.itemText(i) for i in range(combo.count())]
    assert "muon" in optim.names() and "muon" not in offered
    assert set(offered) == {n for n in optim.names() if not optim.info(n).needs_matrices}


def test_a_hidden_playground_draws_its_paths_at_once_without_animating(qtbot):
    """The window computes the preset while another tab is showing: the paths are complete at
    once and no animation timer runs behind the user's training run."""
    widget = Playground()
    qtbot.addWidget(widget)  # never shown
    widget.steps.setValue(60)
    finished = []
    widget.animation_finished.connect(lambda: finished.append(True))
    widget.set_ready()
    assert not widget.is_animating() and finished == [True]
    for item, traj in zip(widget.path_items, widget.trajectories):
        assert _drawn(item) == len(traj.points)
