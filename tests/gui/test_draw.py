"""The Draw tab under pytest-qt: simulated mouse strokes update the probability chart with
exactly `classify(model, canvas image)`; the 28x28 picture shown is the preprocessed one;
Clear, dropped files, bad checkpoints, Fashion-MNIST names, loading only when shown; a slow
forward pass never blocks the GUI thread. Every pass runs in a worker thread: the tests
wait for its result (`classified`, `is_classifying`) rather than expect it at once."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest

from gui.widgets.draw import DrawTab
from tests.test_inference import make_checkpoint


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("draw_ckpts")
    return {"mnist": make_checkpoint(folder / "run_a" / "best.ckpt"),
            "fashion": make_checkpoint(folder / "run_b" / "best.ckpt", net="mlp", dataset="fashion_mnist")}


@pytest.fixture
def tab(qtbot):
    tab = DrawTab()
    qtbot.addWidget(tab)
    tab.show()
    qtbot.waitExposed(tab)
    return tab


def loading(qtbot, tab: DrawTab):
    """Waits for a model to load and then for its first pass's result to be shown."""
    return qtbot.waitSignals([tab.model_loaded, tab.classified], order="simple", timeout=60_000)


def load(qtbot, tab: DrawTab, path: Path) -> None:
    with loading(qtbot, tab):
        tab.load_checkpoint(path)


def settle(qtbot, tab: DrawTab) -> None:
    """Wait until no pass is in flight, waiting or due: the last one's result is shown."""
    qtbot.waitUntil(lambda: not tab.is_classifying, timeout=10_000)


def draw(qtbot, tab: DrawTab, points) -> None:
    """A whole stroke, then the wait for its end's result (`classified`, and no pass left)."""
    with qtbot.waitSignal(tab.classified, timeout=10_000):
        stroke(tab.canvas, points)
    settle(qtbot, tab)


def stroke(canvas, points, release: bool = True, pause_ms: int = 0) -> None:
    """Press at the first point, move through the others, release at the last."""
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(*points[0]))
    for p in points[1:]:
        QTest.mouseMove(canvas, QPoint(*p))
        if pause_ms:
            QTest.qWait(pause_ms)
    if release:
        QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                           QPoint(*points[-1]))


def line(a, b, n: int = 12):
    return [(round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t)) for t in np.linspace(0, 1, n)]


def test_strokes_update_the_chart_with_the_probabilities_of_classify(qtbot, tab, ckpts):
    from lit_opt.inference import classify, preprocess

    load(qtbot, tab, ckpts["mnist"])
    assert tab.chart_values() == {} or max(tab.chart_values().values()) == 0  # empty canvas
    assert tab.prediction.text() == "Draw a digit."

    # A "7": top bar, then the diagonal, as two strokes.
    draw(qtbot, tab, line((70, 60), (210, 60)))
    first = tab.chart_values()
    draw(qtbot, tab, line((210, 60), (120, 230)))
    image = tab.canvas_image()
    assert image.shape == (280, 280, 3) and image.min() == 0 and image.max() == 255
    expected = classify(tab.model, image)
    shown = tab.chart_values()
    assert list(shown) == tab.model.class_names
    assert shown == pytest.approx(expected, abs=1e-7)
    assert shown != first  # the second stroke changed the chart
    assert tab.probabilities == pytest.approx(expected, abs=1e-7)
    top = next(iter(expected))
    assert tab.prediction.text().startswith(top)
    # The picture beside the canvas is the preprocessed 28x28 one.
    np.testing.assert_array_equal(tab.picture, preprocess(image, tab.model).picture)
    assert not tab.picture_label.pixmap().isNull() and tab.picture_label.pixmap().width() == 140


def test_the_chart_updates_while_drawing_throttled(qtbot, tab, ckpts):
    load(qtbot, tab, ckpts["mnist"])
    seen = []
    tab.classified.connect(seen.append)
    points = line((140, 40), (140, 240), n=30)
    stroke(tab.canvas, points, release=False, pause_ms=10)  # ~300 ms of drawing, button still down
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=2000)
    assert 1 <= len(seen) <= len(points) // 3  # updated mid-stroke, but not on every mouse move
    QTest.mouseRelease(tab.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(140, 240))
    settle(qtbot, tab)
    from lit_opt.inference import classify

    assert tab.chart_values() == pytest.approx(classify(tab.model, tab.canvas_image()), abs=1e-7)


def test_clear_empties_canvas_chart_and_picture(qtbot, tab, ckpts):
    load(qtbot, tab, ckpts["mnist"])
    draw(qtbot, tab, line((100, 50), (180, 230)))
    assert tab.probabilities is not None
    with qtbot.waitSignal(tab.classified, timeout=10_000) as blocker:
        QTest.mouseClick(tab.clear_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [None] and not tab.is_classifying
    assert tab.canvas_image().min() == 255
    assert tab.probabilities is None and set(tab.chart_values().values()) == {0.0}
    assert tab.prediction.text() == "Draw a digit."


def test_dropping_an_image_file_classifies_it(qtbot, tab, ckpts, tmp_path):
    from lit_opt.inference import classify

    load(qtbot, tab, ckpts["mnist"])
    path = tmp_path / "two.png"
    im = Image.new("RGBA", (300, 200), (0, 0, 0, 0))  # white strokes on a transparent background
    ImageDraw.Draw(im).line([(110, 50), (180, 40), (190, 90), (110, 160), (200, 160)],
                            fill=(255, 255, 255, 255), width=14)
    im.save(path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(140, 140), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(tab.classified, timeout=5000):
        tab.canvas.dropEvent(event)
    assert tab.chart_values() == pytest.approx(classify(tab.model, path), abs=1e-7)
    assert tab.canvas_image().min() < 50  # the picture is shown on the canvas
    # Drawing on it afterwards classifies the canvas.
    draw(qtbot, tab, line((20, 20), (60, 60)))
    assert tab.chart_values() == pytest.approx(classify(tab.model, tab.canvas_image()), abs=1e-7)


def test_a_bad_checkpoint_is_reported_and_the_tab_keeps_working(qtbot, tab, ckpts, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(ckpts["mnist"].read_bytes()[:1000])
    with qtbot.waitSignal(tab.load_failed, timeout=60_000) as blocker:
        tab.add_checkpoint(bad)
    assert "truncated" in blocker.args[0] and str(bad) in tab.status.text()
    assert tab.model is None
    stroke(tab.canvas, line((100, 50), (180, 230)))  # drawing without a model is fine
    assert not tab.is_classifying
    load(qtbot, tab, ckpts["mnist"])
    assert tab.probabilities is not None  # what was drawn is classified once a model is there


def test_run_checkpoints_load_when_the_tab_is_shown_and_fashion_shows_its_names(qtbot, ckpts):
    tab = DrawTab()
    qtbot.addWidget(tab)
    tab.set_checkpoints([ckpts["fashion"], ckpts["mnist"]])
    assert tab.chooser.count() == 2 and tab.chooser.currentText() == "run_b/best.ckpt"
    assert tab.model is None and "when this tab is shown" in tab.status.text()
    with loading(qtbot, tab):
        tab.show()
    assert tab.model.class_names[0] == "T-shirt/top"
    draw(qtbot, tab, [(60, 60), (220, 60), (220, 230), (60, 230), (60, 60)])
    ticks = [label for _, label in tab.plot.getAxis("left")._tickLevels[0]]
    assert ticks == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                     "Bag", "Ankle boot"]
    assert list(tab.chart_values()) == ticks
    # A new list from the run list keeps the current choice; choosing another loads it.
    tab.set_checkpoints([ckpts["mnist"], ckpts["fashion"]])
    assert tab.chooser.currentText() == "run_b/best.ckpt" and tab.model_path == ckpts["fashion"]
    with loading(qtbot, tab):
        tab.chooser.setCurrentIndex(0)
    assert tab.model.class_names == [str(i) for i in range(10)]
    assert list(tab.chart_values()) == tab.model.class_names


def test_a_slow_pass_never_blocks_the_gui_thread(qtbot, tab, ckpts, monkeypatch):
    """A forward pass that takes 0.5 s (a big net on a busy CPU): the stroke's end returns at
    once, the event loop keeps running meanwhile, and the result arrives later, the right one."""
    import gui.widgets.draw as draw_module
    from lit_opt.inference import classify

    load(qtbot, tab, ckpts["mnist"])
    forward = draw_module._forward

    def slow(model, image):
        time.sleep(0.5)
        return forward(model, image)

    monkeypatch.setattr(draw_module, "_forward", slow)
    seen = []
    tab.classified.connect(seen.append)
    ticks = []
    ticker = QTimer(tab)  # a GUI-thread timer: it ticks only while the loop runs
    ticker.timeout.connect(lambda: ticks.append(time.perf_counter()))
    ticker.start(20)
    points = line((140, 40), (140, 240))
    stroke(tab.canvas, points, release=False)
    started = time.perf_counter()
    QTest.mouseRelease(tab.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(*points[-1]))
    returned = time.perf_counter()
    assert returned - started < 0.2  # the stroke's end handled without waiting for the 0.5 s pass
    assert seen == [] and tab.is_classifying  # ... whose result is still to come
    qtbot.waitUntil(lambda: len(seen) >= 1 and not tab.is_classifying, timeout=10_000)
    arrived = time.perf_counter()
    ticker.stop()
    assert arrived - started >= 0.5
    assert len([t for t in ticks if returned < t < arrived]) >= 5  # the GUI thread went on meanwhile
    assert tab.chart_values() == pytest.approx(classify(tab.model, tab.canvas_image()), abs=1e-7)
