"""The Draw tab's activations under pytest-qt: the values the view draws (read back from its
canvases) equal the net's forward pass computed here step by step on the same preprocessed
picture; one tile per channel; updated while drawing; cleared with the canvas; the colours
drawn are the values' colours; the layout fits many channels and wide dense layers; a
stroke's end overtakes a worker pass in flight and is never dropped itself. Every pass
runs in a worker thread: the tests wait for its result (`classified`, `is_classifying`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from gui.widgets.activations import LAYER_MAX_HEIGHT, ActivationsView, layout_for
from gui.widgets.draw import DrawTab
from tests.gui.test_draw import draw, line, load, stroke
from tests.test_activations import by_hand_lenet5, by_hand_mlp
from tests.test_inference import make_checkpoint


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("activation_ckpts")
    return {"lenet5": make_checkpoint(folder / "lenet" / "best.ckpt", net="lenet5"),
            "mlp": make_checkpoint(folder / "mlp" / "best.ckpt", net="mlp")}  # mlp: the deep preset


@pytest.fixture
def tab(qtbot):
    tab = DrawTab()
    tab.resize(880, 820)
    qtbot.addWidget(tab)
    tab.show()
    qtbot.waitExposed(tab)
    return tab


def expected(tab: DrawTab, image, by_hand) -> list[np.ndarray]:
    """The net's forward written out in the test, on the picture as `preprocess` prepares it."""
    from lit_opt.inference import preprocess

    with torch.no_grad():
        return [a[0].numpy() for a in by_hand(tab.model.net, preprocess(image, tab.model).tensor)]


def expected_from_picture(tab: DrawTab, picture: np.ndarray, by_hand) -> list[np.ndarray]:
    """The net's forward written out in the test, on the 28x28 picture the tab says it gave
    the net, normalized as training batches are."""
    from lit_opt.data import normalize

    info = tab.model.hparams.data_info
    x = normalize(torch.from_numpy(picture)[None, None], info["mean"], info["std"])
    with torch.no_grad():
        return [a[0].numpy() for a in by_hand(tab.model.net, x)]


def assert_shows(tab: DrawTab, want: list[np.ndarray]) -> None:
    rows = tab.activations.rows[:len(tab.activations.layers)]
    assert len(rows) == len(want)
    for row, values in zip(rows, want):
        shown = row.shown_values()  # read back from the canvas the picture is coloured from
        assert shown.shape == values.shape, row.label
        np.testing.assert_allclose(shown, values, rtol=1e-5, atol=1e-6, err_msg=row.label)
        assert row.image.isVisible() and row.title.isVisible()
        assert row.image.pixmap().height() >= row.canvas.shape[0]
        assert row.image.pixmap().width() == row.canvas.shape[1]


def test_lenet5_activations_shown_equal_its_forward_pass_with_a_tile_per_channel(qtbot, tab, ckpts):
    load(qtbot, tab, ckpts["lenet5"])
    assert tab.activations.placeholder.isVisible() and not tab.activations.layers  # nothing drawn yet
    draw(qtbot, tab, line((70, 60), (210, 60)))
    draw(qtbot, tab, line((210, 60), (120, 230)))
    assert_shows(tab, expected(tab, tab.canvas_image(), by_hand_lenet5))
    rows = tab.activations.rows
    conv = tab.model.net.features
    channels = [conv[0].out_channels, conv[3].out_channels]
    assert [rows[0].tile_count(), rows[1].tile_count()] == channels == [6, 16]
    assert rows[0].layout.count == 6 and rows[0].layout.tile == (28, 28)
    assert "conv 6@5x5 (after relu)" in rows[0].title.text() and "6x28x28" in rows[0].title.text()
    assert rows[4].label == "dense 84->10 (logits)"
    assert "dense 84-&gt;10 (logits)" in rows[4].title.text() and "10 units" in rows[4].title.text()
    assert not tab.activations.placeholder.isVisible()


def test_the_colours_drawn_are_the_values_colours(qtbot, tab, ckpts):
    load(qtbot, tab, ckpts["lenet5"])
    draw(qtbot, tab, line((140, 40), (140, 240)))
    view = tab.activations
    row = view.rows[0]
    image = row.image.pixmap().toImage()
    k, y, x = np.unravel_index(np.argmax(row.values), row.values.shape)
    oy, ox = row.layout.origin(int(k))
    s = row.layout.sx
    peak = image.pixelColor(ox + int(x) * s, oy + int(y) * s)
    assert (peak.red(), peak.green(), peak.blue()) == tuple(view._lut[-1])  # the largest value: darkest red
    zeros = np.argwhere(row.values == 0)
    assert len(zeros)  # after relu, some are exactly 0: drawn white
    k, y, x = zeros[0]
    oy, ox = row.layout.origin(int(k))
    zero = image.pixelColor(ox + int(x) * s, oy + int(y) * s)
    assert (zero.red(), zero.green(), zero.blue()) == (255, 255, 255)
    # Hovering names the channel, the position and the value.
    assert row.describe_at(ox + int(x) * s, oy + int(y) * s) == \
        f"{row.label}\nchannel {k}, row {y}, column {x}: 0"
    logits = view.rows[4]
    assert logits.describe_at(1, 1) == f"{logits.label}\nclass 0: {logits.values[0]:.4g}"


def test_deep_mlp_updates_while_drawing_and_clear_empties_the_view(qtbot, tab, ckpts):
    load(qtbot, tab, ckpts["mlp"])
    seen = []  # (the picture the net was given, the values shown) at each update

    def record(probs):
        if probs is not None:  # None: Clear, at the end
            seen.append((tab.picture.copy(), [row.shown_values().copy() for row in tab.activations.rows[:4]]))

    tab.classified.connect(record)
    stroke(tab.canvas, line((140, 40), (140, 240), n=30), release=False, pause_ms=10)
    # Updated mid-stroke (by the worker thread's pass; the canvas has moved on since), throttled.
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=2000)
    assert len(tab.activations.layers) == 4
    picture, shown = seen[0]
    for got, want in zip(shown, expected_from_picture(tab, picture, by_hand_mlp)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    QTest.mouseRelease(tab.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       QPoint(140, 240))
    draw(qtbot, tab, line((60, 140), (220, 140)))
    assert_shows(tab, expected(tab, tab.canvas_image(), by_hand_mlp))
    assert not np.array_equal(shown[0], tab.activations.layers[0].values)  # more strokes changed them
    with qtbot.waitSignal(tab.classified, timeout=10_000):
        QTest.mouseClick(tab.clear_button, Qt.MouseButton.LeftButton)
    assert tab.activations.layers == [] and tab.activations.placeholder.isVisible()
    assert not any(row.image.isVisible() for row in tab.activations.rows)


def test_a_strokes_end_overtakes_a_worker_pass_in_flight_and_is_never_dropped(qtbot, tab, ckpts):
    from PySide6.QtCore import QPointF

    from lit_opt.inference import preprocess

    load(qtbot, tab, ckpts["mlp"])
    arrived, shown = [], []

    def on_passed(token, number, result):
        if token == tab._token:
            arrived.append(result)

    tab._pass_signals.passed.connect(on_passed)
    tab.classified.connect(shown.append)

    def draw_line(a, b):
        tab.canvas.draw_line(QPointF(*a), QPointF(*b))
        tab._timer.stop()  # the passes below are started by hand

    try:
        tab._model_lock.acquire()  # hold the worker's pass until the stroke's end has been asked for
        try:
            draw_line((140, 40), (140, 240))
            tab.classify_in_background()  # sees the first line only
            draw_line((60, 140), (220, 140))
            tab.classify_now()  # the stroke's end: both lines; it returns at once, waiting its turn
            assert tab._busy and tab._queued is not None and shown == []
        finally:
            tab._model_lock.release()
        # (`arrived` hears the worker's signal through an event of its own: wait for it, too)
        qtbot.waitUntil(lambda: len(arrived) >= 2 and not tab.is_classifying, timeout=10_000)
        final = preprocess(tab.canvas_image(), tab.model).picture
        assert len(arrived) == 2
        assert not np.array_equal(arrived[0][1].picture, final)  # the stale pass, first ...
        np.testing.assert_array_equal(arrived[1][1].picture, final)  # ... then the stroke's end's
        assert len(shown) == 1  # only the stroke's end's result was shown
        np.testing.assert_array_equal(tab.picture, final)
        assert_shows(tab, expected(tab, tab.canvas_image(), by_hand_mlp))

        # Only a later pass of its kind drops a stroke's end's pass: Clear while it is in flight.
        arrived.clear(), shown.clear()
        tab._model_lock.acquire()
        try:
            draw_line((60, 60), (200, 200))
            tab.classify_now()  # a stroke's end, held in flight
            tab.clear()  # waits its turn; the stroke's end is stale now
            assert tab._busy and tab._queued is not None and shown == []
        finally:
            tab._model_lock.release()
        qtbot.waitUntil(lambda: len(arrived) >= 2 and not tab.is_classifying, timeout=10_000)
        assert len(arrived) == 2 and shown == [None] and tab.probabilities is None
        assert tab.activations.layers == [] and not tab._busy
    finally:
        tab._pass_signals.passed.disconnect(on_passed)


def test_a_dropped_file_shows_its_activations_and_a_new_model_its_own_layers(qtbot, tab, ckpts,
                                                                             tmp_path):
    load(qtbot, tab, ckpts["mlp"])
    path = tmp_path / "two.png"
    im = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(im).line([(60, 50), (140, 40), (150, 90), (60, 160), (150, 160)], fill=0, width=14)
    im.save(path)
    with qtbot.waitSignal(tab.classified, timeout=10_000):
        tab.classify_file(str(path))
    assert_shows(tab, expected(tab, path, by_hand_mlp))
    load(qtbot, tab, ckpts["lenet5"])  # the same picture through another net: five rows now
    assert_shows(tab, expected(tab, path, by_hand_lenet5))


def test_resizing_relays_the_tiles_without_changing_the_values(qtbot, tab, ckpts):
    load(qtbot, tab, ckpts["lenet5"])
    draw(qtbot, tab, line((100, 50), (180, 230)))
    before = [row.layout for row in tab.activations.rows]
    values = [row.shown_values().copy() for row in tab.activations.rows]
    tab.resize(1400, 820)
    qtbot.waitUntil(lambda: [row.layout for row in tab.activations.rows] != before, timeout=2000)
    for row, want in zip(tab.activations.rows, values):
        np.testing.assert_array_equal(row.shown_values(), want)
        assert row.canvas.shape[1] <= tab.activations.image_width()


@pytest.mark.parametrize("shape, width", [((256, 4, 4), 600), ((64, 32, 32), 600), ((6, 28, 28), 300),
                                          ((784,), 600), ((10,), 600), ((3, 5, 5), 40)])
def test_layouts_fit_the_width_and_keep_every_value(shape, width):
    view = ActivationsView()
    layout = layout_for(shape, width)
    height, w = layout.size()
    assert layout.count == shape[0] and layout.cols * layout.rows >= layout.count
    assert w <= max(width, 40) or layout.sx == 1 and layout.cols == 1
    assert height <= LAYER_MAX_HEIGHT or layout.sx == 1
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    view.set_layers([("layer", values)])
    row = view.rows[0]
    row.show("layer", values, width, view._lut)
    np.testing.assert_array_equal(row.shown_values(), values)


@pytest.mark.parametrize("units, width, rows", [(100, 850, 1), (100, 800, 1), (120, 600, 1), (10, 600, 1),
                                                (784, 600, 4)])
def test_a_dense_layer_is_one_strip_when_the_width_allows(units, width, rows):
    layout = layout_for((units,), width)
    assert layout.rows == rows and layout.size()[1] <= width