"""Steer: change the learning rate, momentum and weight decay of the run that trains now.

Answers "what happens if I lower the learning rate here?" the way TensorFlow Playground does,
but recorded: each Apply becomes a change at the step the next batch starts at (the run's
config.yaml, lit_opt/steering.py), drawn as a marker on the curves, and repeated exactly by a
resume or by `fit --config` of the run.

Without a schedule the learning rate typed is the rate used from then on (sent as a factor on
the config's rate); with one (OneCycle, cosine, step) the schedule sets the rate every step,
so the field is a factor that multiplies the scheduled rate. Momentum (SGD's momentum, Adam's
first beta) and weight decay are set as typed; empty fields stay as they are.
"""

from __future__ import annotations

import math
from typing import Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from gui.records import optimizer_values


class SteerBox(QWidget):
    apply_requested = Signal(object)  # {"lr_factor"?, "momentum"?, "weight_decay"?}
    invalid = Signal(str)  # what was typed wrong, and what is allowed

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 0)
        self.lr_label = QLabel("lr")
        self.lr = QLineEdit()
        self.momentum = QLineEdit()
        self.weight_decay = QLineEdit()
        for edit, name, width in ((self.lr, "steer_lr", 80), (self.momentum, "steer_momentum", 56),
                                  (self.weight_decay, "steer_weight_decay", 64)):
            edit.setObjectName(name)
            edit.setMaximumWidth(width)
            edit.returnPressed.connect(self.apply)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setObjectName("steer_apply")
        self.apply_button.setToolTip("from the next batch on; recorded in the run's config.yaml and drawn on the curves")
        self.apply_button.clicked.connect(self.apply)
        row.addWidget(QLabel("Steer:"))
        row.addWidget(self.lr_label)
        row.addWidget(self.lr)
        row.addWidget(QLabel("momentum"))
        row.addWidget(self.momentum)
        row.addWidget(QLabel("wd"))
        row.addWidget(self.weight_decay)
        row.addWidget(self.apply_button)
        row.addStretch(1)
        self.base_lr: Optional[float] = None
        self.scheduled = False
        self.set_run(None)

    def set_run(self, config: Optional[dict]) -> None:
        """The run that trains now (its config), or None: what the fields mean and hold."""
        for edit in (self.lr, self.momentum, self.weight_decay):
            edit.clear()
        model = (config or {}).get("model") or {}
        values = optimizer_values(model)
        self.base_lr = values.get("lr")
        self.scheduled = (model.get("scheduler") or "constant") != "constant"
        self.lr_label.setText("lr x" if self.scheduled else "lr")
        self.lr.setToolTip("a factor on the scheduled learning rate (1 = as scheduled)" if self.scheduled
                           else "the learning rate from the next batch on")
        self.lr.setPlaceholderText("1" if self.scheduled else (f"{self.base_lr:g}" if self.base_lr else ""))
        momentum = values.get("momentum", (values.get("betas") or (None,))[0])
        self.momentum.setEnabled(momentum is not None)
        self.momentum.setPlaceholderText("" if momentum is None else f"{momentum:g}")
        self.momentum.setToolTip("SGD's momentum, or the first beta of Adam-like optimizers, in [0, 1)"
                                 if momentum is not None else "this optimizer has no momentum")
        wd = values.get("weight_decay")
        self.weight_decay.setEnabled(wd is not None)
        self.weight_decay.setPlaceholderText("" if wd is None else f"{wd:g}")

    def values(self) -> dict:
        """The typed values as a change; ValueError naming the field and what it allows."""
        change: dict = {}
        lr = _number(self.lr, "lr")
        if lr is not None:
            if lr <= 0:
                raise ValueError(f"lr must be > 0, not {lr:g}")
            if self.scheduled:
                change["lr_factor"] = lr
            elif self.base_lr:
                change["lr_factor"] = lr / self.base_lr
        momentum = _number(self.momentum, "momentum")
        if momentum is not None:
            if not 0 <= momentum < 1:
                raise ValueError(f"momentum must be in [0, 1), not {momentum:g}")
            change["momentum"] = momentum
        wd = _number(self.weight_decay, "weight decay")
        if wd is not None:
            if wd < 0:
                raise ValueError(f"weight decay must be >= 0, not {wd:g}")
            change["weight_decay"] = wd
        if not change:
            raise ValueError("type a learning rate, momentum or weight decay to apply")
        return change

    def apply(self) -> None:
        try:
            change = self.values()
        except ValueError as exc:
            self.invalid.emit(str(exc))
            return
        self.apply_requested.emit(change)


def _number(edit: QLineEdit, name: str) -> Optional[float]:
    text = edit.text().strip()
    if not text or not edit.isEnabled():
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number such as 0.01 or 1e-3, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {text!r}")
    return value
