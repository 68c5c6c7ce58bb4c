"""One input widget per `Hyperparameter` (lit_opt.optim's schema type), validated as typed.

`ParamField(hp)` picks the editor from the field's type: a check box for bools, a combo
box for choices, a line edit for numbers and tuples (so 1e-3 can be typed as it is
written). The tooltip is the schema's help text, the allowed range and the default; an
invalid entry turns red and `error()` returns the registry's own message.

`guard_wheel(widget)`: the mouse wheel changes a combo box or number field only once it has
focus (a click or Tab); over an unfocused one the wheel scrolls the form around it, so
scrolling a long form never changes a setting unseen.
"""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLineEdit, QWidget

from lit_opt.optim.hyperparameter import Hyperparameter

_INVALID = "QLineEdit { background: #ffd6d6; }"
_READ_ONLY = "QLineEdit { background: palette(window); color: palette(text); }"


class _WheelGuard(QObject):
    """Event filter: a wheel event on a widget without focus is refused (ignored, so Qt hands
    it on to the parents: the scroll area around the form scrolls instead)."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()
            return True
        return False


def guard_wheel(widget: QWidget) -> QWidget:
    """Let the wheel change `widget` only while it has focus; it takes focus by click or Tab,
    never by the wheel (Qt's default for combo and spin boxes is Qt.WheelFocus)."""
    widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    widget.installEventFilter(_WheelGuard(widget))  # parented: lives as long as the widget
    return widget


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        short = f"{value:g}"  # 6 significant digits: shown when they are the exact value
        return short if float(short) == value else repr(value)  # else every digit, never a rounded value
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


class ParamField(QWidget):
    """An editor for one hyperparameter. `optional`: blank means None (unset)."""

    changed = Signal()

    def __init__(self, hp: Hyperparameter, optional: bool = False, placeholder: str = "",
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.hp, self.optional = hp, optional
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if hp.type is bool:
            self.editor = QCheckBox()
            self.editor.toggled.connect(self._emit_changed)
        elif hp.choices is not None:
            self.editor = QComboBox()
            self.editor.addItems([str(c) for c in hp.choices])
            self.editor.currentIndexChanged.connect(self._emit_changed)
        else:
            self.editor = QLineEdit()
            self.editor.setPlaceholderText(placeholder or ("unset" if optional else ""))
            self.editor.textChanged.connect(self._on_text)
        guard_wheel(self.editor)
        self._read_only = False
        layout.addWidget(self.editor)
        self.editor.setObjectName(hp.name)
        tip = [hp.help] if hp.help else []
        tip.append(f"allowed: {hp.range_text}" + (", or blank" if optional else ""))
        if hp.default is not None:
            tip.append(f"default: {format_value(hp.default)}")
        self.setToolTip("\n".join(tip))
        self.set_value(hp.default)

    def set_value(self, value: Any) -> None:
        if isinstance(self.editor, QCheckBox):
            self.editor.setChecked(bool(value))
        elif isinstance(self.editor, QComboBox):
            index = self.editor.findText(format_value(value))
            self.editor.setCurrentIndex(max(index, 0))
        else:
            self.editor.setText(format_value(value))

    def set_read_only(self, read_only: bool) -> None:
        """Shown but not editable (a text stays selectable; a combo or check box is disabled)."""
        self._read_only = read_only
        if isinstance(self.editor, QLineEdit):
            self.editor.setReadOnly(read_only)
            self._restyle()
        else:
            self.editor.setEnabled(not read_only)

    def is_read_only(self) -> bool:
        return self._read_only

    def raw(self) -> Any:
        if isinstance(self.editor, QCheckBox):
            return self.editor.isChecked()
        if isinstance(self.editor, QComboBox):
            return self.editor.currentText()
        return self.editor.text().strip()

    def error(self) -> Optional[str]:
        try:
            self.value()
        except ValueError as exc:
            return str(exc)
        return None

    def value(self) -> Any:
        """The checked value (ValueError with the allowed range if invalid; None if blank and optional)."""
        raw = self.raw()
        if raw == "" and self.optional:
            return None
        value = self.hp.check(raw)
        return list(value) if isinstance(value, tuple) else value

    def _restyle(self) -> None:
        self.editor.setStyleSheet(_INVALID if self.error() else _READ_ONLY if self._read_only else "")

    def _on_text(self) -> None:
        self._restyle()
        self.changed.emit()

    def _emit_changed(self) -> None:
        self.changed.emit()
