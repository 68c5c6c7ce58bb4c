"""The form as people use it: the wheel, a small window, a running run, Load.

Wheel events are real QWheelEvents delivered by Qt (QApplication.sendEvent); the window is
the app's own MainWindow at 1280x800.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QComboBox, QLineEdit, QScrollArea

from gui.widgets import run_form as run_form_module
from gui.widgets.run_form import RunForm

ROOT = Path(__file__).resolve().parents[2]
RUN_FIELDS = ("trainer.max_epochs", "seed_everything", "run.name")


def wheel(widget, steps: int = -1) -> bool:
    """One notch of the mouse wheel over the middle of `widget` (negative: towards the user)."""
    pos = QPointF(widget.rect().center())
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                        False)
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


@pytest.fixture
def scrolled_form(qtbot):
    """The form in a scroll area, shown and active, as in the window."""
    form = RunForm()
    scroll = QScrollArea()
    scroll.setWidget(form)
    scroll.setWidgetResizable(True)
    scroll.resize(460, 400)
    qtbot.addWidget(scroll)
    scroll.show()
    scroll.activateWindow()
    qtbot.waitExposed(scroll)
    return form, scroll


def test_the_wheel_over_an_unfocused_optimizer_box_changes_nothing(scrolled_form, qtbot):
    form, scroll = scrolled_form
    combo = form.optimizer
    assert combo.focusPolicy() == Qt.FocusPolicy.StrongFocus  # the wheel never gives it focus
    lr = form.lr.raw()
    assert not combo.hasFocus()
    for steps in (-1, -1, 1, -3):
        wheel(combo, steps)
    assert combo.currentText() == "sgd" and not combo.hasFocus()
    assert form.lr.raw() == lr and form.to_config() == {}


def system_wheel(widget, steps: int = -1) -> None:
    """A wheel notch as the mouse sends it: through Qt's window-system queue (a spontaneous
    event, which Qt hands on to the parents when the widget under the cursor ignores it)."""
    window = widget.window()
    pos = widget.mapTo(window, widget.rect().center())
    QTest.wheelEvent(window.windowHandle(), QPointF(pos), QPoint(0, 120 * steps))
    QApplication.processEvents()


def test_the_wheel_over_an_unfocused_field_scrolls_the_form_instead(scrolled_form, qtbot):
    form, scroll = scrolled_form
    bar = scroll.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == 0
    assert not wheel(form.dataset, -1)  # refused by the combo box ...
    assert bar.value() == 0 and form.dataset.currentText() == "mnist"
    system_wheel(form.dataset, -1)  # ... so a real wheel scrolls the form around it
    assert bar.value() > 0 and form.dataset.currentText() == "mnist"
    assert form.optimizer.currentText() == "sgd" and form.to_config() == {}


def test_a_real_wheel_over_a_focused_box_changes_it(scrolled_form, qtbot):
    form, scroll = scrolled_form
    form.dataset.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(form.dataset.hasFocus)
    system_wheel(form.dataset, -1)
    assert form.dataset.currentIndex() == 1 and scroll.verticalScrollBar().value() == 0


def test_the_wheel_over_a_focused_optimizer_box_steps_through_it(scrolled_form, qtbot):
    form, _ = scrolled_form
    combo = form.optimizer
    combo.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(combo.hasFocus)
    start = combo.currentIndex()
    wheel(combo, -1)  # towards the user: the next entry, as Qt's combo box does
    assert combo.currentIndex() == start + 1
    assert form.to_config()["model"]["optimizer"] == combo.currentText()


def test_every_field_with_a_wheel_is_guarded(qtbot):
    form = RunForm()
    qtbot.addWidget(form)
    form.optimizer.setCurrentText("sam")  # fields rebuilt: their combos are guarded too
    combos = form.findChildren(QComboBox)
    assert len(combos) >= 6
    for combo in combos:
        assert combo.focusPolicy() == Qt.FocusPolicy.StrongFocus, combo.objectName()
        index = combo.currentIndex()
        wheel(combo, -1)
        assert combo.currentIndex() == index, combo.objectName()


def test_epochs_seed_name_and_device_show_without_scrolling_at_1280x800(qtbot, tmp_path):
    from gui.main_window import MainWindow

    window = MainWindow(runs_root=tmp_path, load_in_background=False)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    assert (window.width(), window.height()) == (1280, 800)
    form = window.form
    scroll = next(s for s in window.findChildren(QScrollArea) if s.widget() is form)
    viewport = scroll.viewport()
    assert scroll.verticalScrollBar().value() == 0
    widgets = [form._fields[path] for path in RUN_FIELDS] + [form.device]
    for widget in widgets:
        top_left = widget.mapTo(viewport, QPoint(0, 0))
        bottom_right = widget.mapTo(viewport, QPoint(widget.width() - 1, widget.height() - 1))
        assert widget.isVisible()
        assert viewport.rect().contains(top_left) and viewport.rect().contains(bottom_right), \
            (widget.objectName(), top_left, bottom_right, viewport.size())
    # still so with the read-only note above them
    form.set_locked(True)
    qtbot.waitUntil(form.locked_note.isVisible)
    QApplication.processEvents()
    for widget in widgets:
        bottom_right = widget.mapTo(viewport, QPoint(widget.width() - 1, widget.height() - 1))
        assert viewport.rect().contains(bottom_right)
    window.dispose()


def test_set_locked_makes_the_form_read_only_and_back(qtbot):
    form = RunForm()
    qtbot.addWidget(form)
    form.show()
    config = form.to_config()
    form.set_locked(True)
    assert form.is_locked() and form.locked_note.isVisible()
    assert "read-only" in form.locked_note.text()
    for field in form._all_fields():
        assert field.is_read_only()
        editor = field.editor
        assert editor.isReadOnly() if isinstance(editor, QLineEdit) else not editor.isEnabled()
    for combo in (form.dataset, form.net, form.optimizer, form.scheduler, form.device):
        assert not combo.isEnabled()
    assert not form.load_button.isEnabled() and form.save_button.isEnabled()
    # typing changes nothing
    epochs = form._fields["trainer.max_epochs"].editor
    epochs.setFocus()
    qtbot.keyClicks(epochs, "9")
    assert form.to_config() == config
    # fields built while locked (a loaded config with another optimizer) are read-only too
    form.load_config({"model": {"optimizer": "adam"}})
    assert all(f.is_read_only() for f in form._opt_fields.values())

    form.set_locked(False)
    assert not form.is_locked() and not form.locked_note.isVisible()
    for field in form._all_fields():
        assert not field.is_read_only()
        editor = field.editor
        assert not editor.isReadOnly() if isinstance(editor, QLineEdit) else editor.isEnabled()
    assert form.load_button.isEnabled() and form.optimizer.isEnabled()
    qtbot.keyClicks(epochs, "9")
    assert form.to_config()["trainer"]["max_epochs"] == 59


def test_load_confirms_the_file(qtbot, monkeypatch, tmp_path):
    form = RunForm()
    qtbot.addWidget(form)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"model": {"optimizer": "adam", "lr": 0.003}, "trainer": {"max_epochs": 7}}))
    monkeypatch.setattr(run_form_module.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(path), "YAML (*.yaml *.yml)")))
    with qtbot.waitSignal(form.info_message, timeout=2000) as blocker:
        qtbot.mouseClick(form.load_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [f"Loaded {path}"]
    assert form.optimizer.currentText() == "adam" and form._fields["trainer.max_epochs"].raw() == "7"
    assert form.source_label.text() == f"loaded {path}"

    # relative to the working folder when inside it; a failed load says so and confirms nothing
    monkeypatch.chdir(tmp_path)
    with qtbot.waitSignal(form.info_message, timeout=2000) as blocker:
        form.load(path)
    assert blocker.args == ["Loaded mine.yaml"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    monkeypatch.setattr(run_form_module.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(bad), "")))
    infos, errors = [], []
    form.info_message.connect(infos.append)
    form.error_message.connect(errors.append)
    form.load_button.click()
    assert infos == [] and len(errors) == 1 and str(bad) in errors[0]


def test_save_confirms_and_load_is_refused_while_locked(qtbot, monkeypatch, tmp_path):
    form = RunForm()
    qtbot.addWidget(form)
    messages = []
    form.info_message.connect(messages.append)
    form.save(tmp_path / "out.yaml")
    assert messages == [f"Saved {tmp_path / 'out.yaml'}"]
    opened = []
    monkeypatch.setattr(run_form_module.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: opened.append(1) or ("", "")))
    form.set_locked(True)
    form._ask_load()  # the File menu's Load config… reaches the form this way
    assert opened == [] and "running run" in messages[-1]
