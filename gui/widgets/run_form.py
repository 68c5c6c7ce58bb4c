"""The run form: everything a fit run needs, read and written as the CLI's YAML.

    form = RunForm()
    form.load_config(yaml.safe_load(open("configs/seed003_best_mlp.yaml")))
    config = form.to_config()      # FormError naming every invalid field
    form.save(path); form.load(path)

The optimizer's fields are generated from its registry schema (`lit_opt.optim.schema`):
defaults, ranges and help text come from there, and only the fields of the chosen
optimizer (for SAM: its own and its base optimizer's) are shown. A config keeps every key
the form does not show, and writes a shown value only when it differs from the default or
the loaded file had it, so Load then Save gives back the same file and a run started here
repeats with `python -m lit_opt fit --config FILE`.

The run's own settings (epochs, seed, run name, runs folder, device) come first, so they
show without scrolling in a small window. `set_locked(True)` makes the form read-only
while a run trains (its edits would change nothing) and says so; `info_message` confirms
a Load or Save ("Loaded FILE"). The mouse wheel changes no field that lacks focus.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QPushButton, QVBoxLayout, QWidget)

from lit_opt import declarations, optim
from lit_opt.optim.hyperparameter import Hyperparameter as H
from gui.widgets.fields import ParamField, guard_wheel

# lit_opt's own tables of choices: importable without torch, so the form opens at once.
DATASETS = list(declarations.DATASETS)
NET_OPTIONS = declarations.NET_OPTIONS
SCHEDULER_OPTIONS = declarations.SCHEDULER_OPTIONS

def _weight_decay_defaults() -> dict[str, float]:
    """Each optimizer's default weight decay, from its registry schema."""
    return {name: h.default for name in optim.names() for h in optim.schema(name) if h.name == "weight_decay"}


# (config path, field, default in the config); an optional field's blank means "unset".
_DATA = [
    ("data.train_size", H("train_size", int, None, low=1, help="use only this many training images"), None),
    ("data.val_size", H("val_size", int, 5000, low=0, help="images carved off the training set for validation; 0: none, every image trains"), 5000),
    ("data.test_size", H("test_size", int, None, low=1, help="use only this many test images"), None),
    ("data.batch_size", H("batch_size", int, 100, low=1, help="training batch size"), 100),
]
_REGULARIZATION = [
    ("model.l2", H("l2", float, 0.0, low=0.0, help="lambda of the penalty lambda * sum(w^2), added to the loss"), 0.0),
    ("model.weight_decay", H("weight_decay", float, None, low=0.0,
                             help="the optimizer's own weight decay (how it is applied: the "
                                  "optimizer field's help); blank: the optimizer's default ("
                                  + ", ".join(f"{n} {d:g}" for n, d in _weight_decay_defaults().items()
                                              if d) + ", else 0)"), None),
    ("model.dropout", H("dropout", float, 0.0, low=0.0, high=1.0, help="dropout probability before each dense layer"), 0.0),
    ("model.label_smoothing", H("label_smoothing", float, 0.0, low=0.0, high=1.0,
                                help="cross-entropy label smoothing for training"), 0.0),
    ("model.early_stopping", H("early_stopping", int, None, low=1,
                               help="stop after this many epochs without a better val/acc"), None),
    ("model.regularize_bias", H("regularize_bias", bool, False,
                                help="apply l2 and weight decay to biases and normalization parameters too"), False),
]
_TRAINING = [
    ("trainer.max_epochs", H("max_epochs", int, 5, low=1, help="number of epochs"), 5),
    ("seed_everything", H("seed", int, 0, low=0, help="global seed: weights, dropout, batch order"), 0),
    ("run.name", H("name", str, None, help="run folder name (blank: <dataset>-<net>-<optimizer>-<date>-<time>)"), None),
    ("run.root", H("root", str, "checkpoints", help="folder that holds the run folders"), "checkpoints"),
]
_LABELS = {"trainer.max_epochs": "epochs", "run.name": "run name", "run.root": "runs folder"}
_PLACEHOLDERS = {"run.name": "automatic: dataset-net-optimizer-date-time"}
OPTIONAL = {"data.train_size", "data.test_size", "model.weight_decay", "model.early_stopping", "run.name"}

CLI_HINT = ("Runs on several devices belong to the command line, because Lightning's DDP "
            "relaunches the program: python -m lit_opt fit --config FILE --trainer.devices N "
            "--trainer.strategy ddp")


class FormError(ValueError):
    """One or more fields are invalid; the message lists them, one a line."""


def get_path(config: dict, path: str, default: Any = None) -> Any:
    node: Any = config
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def has_path(config: dict, path: str) -> bool:
    sentinel = object()
    return get_path(config, path, sentinel) is not sentinel


def set_path(config: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = config
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value


def pop_path(config: dict, path: str) -> None:
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(last, None)


def device_problem(trainer: dict) -> Optional[str]:
    """Why the app cannot run this trainer config (more than one device), or None."""
    devices = trainer.get("devices", 1)
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    count = None
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, int) or (isinstance(devices, str) and devices.strip().lstrip("-").isdigit()):
        count = int(devices)
        if count == -1 and accelerator != "cpu":
            count = None  # every device there is
    elif str(devices).lower() == "auto" and accelerator != "cpu":
        count = None
    else:
        count = 1
    nodes = int(trainer.get("num_nodes", 1) or 1)
    strategy = str(trainer.get("strategy", "auto")).lower()
    if count is None or count > 1 or nodes > 1 or strategy.startswith(("ddp", "fsdp", "deepspeed")):
        return (f"This config asks for several devices (devices: {devices}, num_nodes: {nodes}, "
                f"strategy: {strategy}); the app trains on the CPU or one GPU. {CLI_HINT}")
    return None


class RunForm(QWidget):
    """Dataset, net, optimizer, regularization, schedule and training settings."""

    changed = Signal()
    error_message = Signal(str)  # a file could not be read or written
    info_message = Signal(str)  # "Loaded FILE", "Saved FILE": for the window's status bar
    LOCKED_NOTE = ("Settings of the running run (read-only): they apply to this run only. "
                   "Edit them for the next run once it ends.")

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._sam_base: Optional[str] = None
        self._base: dict = {}  # the loaded config: keys the form does not show survive here
        self._fields: dict[str, ParamField] = {}
        self._gpus: list[str] = []
        self._locked = False
        layout = QVBoxLayout(self)
        layout.setSpacing(4)

        buttons = QHBoxLayout()
        self.load_button, self.save_button = QPushButton("Load YAML…"), QPushButton("Save YAML…")
        self.load_button.setToolTip("Read a config in the format of `python -m lit_opt fit --config`")
        self.save_button.setToolTip("Write the form as a config for `python -m lit_opt fit --config`")
        self.load_button.clicked.connect(self._ask_load)
        self.save_button.clicked.connect(self._ask_save)
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.save_button)
        layout.addLayout(buttons)
        self.source_label = QLabel("")  # "loaded FILE", once a file is loaded
        self.source_label.setObjectName("form_source")
        self.source_label.setVisible(False)
        layout.addWidget(self.source_label)
        self.locked_note = QLabel(self.LOCKED_NOTE)
        self.locked_note.setObjectName("form_locked")
        self.locked_note.setWordWrap(True)
        self.locked_note.setStyleSheet("QLabel { background: #fff4c2; border: 1px solid #d9c26a; "
                                       "border-radius: 3px; padding: 3px; }")
        self.locked_note.setVisible(False)
        layout.addWidget(self.locked_note)

        # the run itself first: visible without scrolling
        run = self._group(layout, "Run")
        self._add_fields(run, _TRAINING)
        self.device = QComboBox()
        self.device.setObjectName("device")
        self.device.setToolTip("CPU or one GPU. " + CLI_HINT)
        run.addRow("device", self.device)

        # data
        data = self._group(layout, "Data")
        self.dataset = QComboBox()
        self.dataset.addItems(DATASETS)
        self.dataset.setObjectName("dataset")
        guard_wheel(self.dataset)
        data.addRow("dataset", self.dataset)
        default_dir = os.environ.get("LIT_OPT_DATA") or "~/.cache/lit_opt/data"
        self.data_dir = ParamField(H("data_dir", str, None, help="dataset folder"), optional=True,
                                   placeholder=f"default: {default_dir}")
        self.browse_button = QPushButton("…")
        self.browse_button.setFixedWidth(28)
        self.browse_button.clicked.connect(self._browse_data)
        row = QHBoxLayout()
        row.addWidget(self.data_dir)
        row.addWidget(self.browse_button)
        data.addRow("data folder", row)
        self._add_fields(data, _DATA)

        # net
        net = self._group(layout, "Net")
        self.net = QComboBox()
        self.net.addItems(list(NET_OPTIONS))
        self.net.setCurrentText("mlp")
        self.net.setObjectName("net")
        guard_wheel(self.net)
        net.addRow("net", self.net)
        self._net_box = self._sub_form()
        net.addRow(self._net_box)
        self._net_fields: dict[str, ParamField] = {}

        # optimizer
        opt = self._group(layout, "Optimizer")
        self.optimizer = QComboBox()
        self.optimizer.setObjectName("optimizer")
        for name in optim.names():
            self.optimizer.addItem(name)
            self.optimizer.setItemData(self.optimizer.count() - 1, optim.info(name).description,
                                       Qt.ItemDataRole.ToolTipRole)
        self.optimizer.setCurrentText("sgd")  # the spine's default
        guard_wheel(self.optimizer)
        opt.addRow("optimizer", self.optimizer)
        self._opt_box = self._sub_form()
        opt.addRow(self._opt_box)
        self._opt_fields: dict[str, ParamField] = {}
        self.lr: Optional[ParamField] = None

        reg = self._group(layout, "Regularization")
        self._add_fields(reg, _REGULARIZATION)

        sched = self._group(layout, "Learning-rate schedule")
        self.scheduler = QComboBox()
        self.scheduler.addItems(list(SCHEDULER_OPTIONS))
        self.scheduler.setObjectName("scheduler")
        guard_wheel(self.scheduler)
        sched.addRow("scheduler", self.scheduler)
        self._sched_box = self._sub_form()
        sched.addRow(self._sched_box)
        self._sched_fields: dict[str, ParamField] = {}

        guard_wheel(self.device)
        self.set_gpus([])
        layout.addStretch(1)

        self.net.currentTextChanged.connect(self._on_net)
        self.optimizer.currentTextChanged.connect(self._on_optimizer)
        self.scheduler.currentTextChanged.connect(self._on_scheduler)
        self._on_net(self.net.currentText())
        self._on_optimizer(self.optimizer.currentText())
        self._on_scheduler(self.scheduler.currentText())

    # --- building --------------------------------------------------------------------------

    def _group(self, layout: QVBoxLayout, title: str) -> QFormLayout:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setContentsMargins(6, 4, 6, 4)
        form.setVerticalSpacing(4)
        layout.addWidget(box)
        return form

    @staticmethod
    def _sub_form() -> QFormLayout:
        """The rows that change with the chosen net, optimizer or schedule (inside a group)."""
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(6)
        form.setVerticalSpacing(4)
        return form

    def _add_fields(self, form: QFormLayout, specs) -> None:
        for path, hp, _default in specs:
            field = ParamField(hp, optional=path in OPTIONAL, placeholder=_PLACEHOLDERS.get(path, ""))
            field.changed.connect(self.changed)
            self._fields[path] = field
            form.addRow(_LABELS.get(path, hp.name.replace("_", " ")), field)

    def _rebuild(self, box: QFormLayout, fields: dict, hps, values: dict) -> None:
        while box.rowCount():
            box.removeRow(0)
        fields.clear()
        for hp in hps:
            field = ParamField(hp)
            if hp.name in values:
                field.set_value(values[hp.name])
            field.changed.connect(self.changed)
            field.set_read_only(self._locked)
            fields[hp.name] = field
            box.addRow(hp.name.replace("_", " "), field)

    def optimizer_fields(self, name: str, base: Optional[str] = None) -> list[H]:
        """The schema fields the form shows for an optimizer (lr first; weight_decay is a
        regularization field). SAM: its own fields plus its base optimizer's."""
        fields = optim.schema(name)
        if name == "sam":
            base = base or "sgd"
            own = {hp.name: hp for hp in fields}
            below = {hp.name: hp for hp in optim.schema(base)}
            fields = [own.get(key) or below[key] for key in optim.validate("sam", base=base)]
        return [hp for hp in fields if hp.name != "weight_decay"]

    @Slot(str)
    def _on_net(self, name: str) -> None:
        values = dict(get_path(self._base, "model.net_args", {}) or {}) \
            if get_path(self._base, "model.net", "mlp") == name else {}
        self._rebuild(self._net_box, self._net_fields, NET_OPTIONS[name], values)
        self.changed.emit()

    @Slot(str)
    def _on_optimizer(self, name: str, sam_base: Optional[str] = None) -> None:
        same = get_path(self._base, "model.optimizer", "sgd") == name
        values = dict(get_path(self._base, "model.optimizer_args", {}) or {}) if same else {}
        if same and get_path(self._base, "model.lr") is not None:
            values["lr"] = get_path(self._base, "model.lr")
        if sam_base is not None:
            values = {**{k: f.raw() for k, f in self._opt_fields.items()}, "base": sam_base}
        base = values.get("base") if name == "sam" else None
        self._rebuild(self._opt_box, self._opt_fields, self.optimizer_fields(name, base), values)
        self.lr = self._opt_fields.get("lr")
        if "base" in self._opt_fields:
            self._opt_fields["base"].editor.currentTextChanged.connect(self._on_sam_base)
        self.changed.emit()

    @Slot(str)
    def _on_sam_base(self, base: str) -> None:
        # The combo that emitted this is among the fields rebuilt: rebuild after it returns.
        self._sam_base = base
        QTimer.singleShot(0, self._rebuild_sam)

    @Slot()
    def _rebuild_sam(self) -> None:
        if self.optimizer.currentText() == "sam" and self._sam_base is not None:
            self._on_optimizer("sam", sam_base=self._sam_base)

    @Slot(str)
    def _on_scheduler(self, name: str) -> None:
        values = dict(get_path(self._base, "model.scheduler_args", {}) or {}) \
            if get_path(self._base, "model.scheduler", "constant") == name else {}
        self._rebuild(self._sched_box, self._sched_fields, SCHEDULER_OPTIONS[name], values)
        self.changed.emit()

    def set_gpus(self, names: list[str]) -> None:
        """Offer 'auto', 'cpu' and one entry per GPU (known once torch has loaded)."""
        current = self.device.currentData()
        self._gpus = list(names)
        self.device.clear()
        self.device.addItem("auto (one GPU if available, else CPU)", "auto")
        self.device.addItem("CPU", "cpu")
        for i, name in enumerate(names):
            self.device.addItem(f"GPU {i}: {name}", f"gpu:{i}")
        self._select_device(current or self._device_of(self._base))

    def _select_device(self, key: str) -> None:
        index = self.device.findData(key)
        if index < 0 and key.startswith("gpu:"):  # torch not loaded yet: keep the choice
            self.device.addItem(f"GPU {key[4:]}", key)
            index = self.device.count() - 1
        self.device.setCurrentIndex(max(index, 0))

    @staticmethod
    def _device_of(config: dict) -> str:
        trainer = config.get("trainer") or {}
        if device_problem(trainer):
            return "multi"  # shown as 'auto'; to_config refuses it unless a device is chosen
        accelerator = str(trainer.get("accelerator", "auto")).lower()
        devices = trainer.get("devices", 1)
        if accelerator == "cpu":
            return "cpu"
        if accelerator in ("gpu", "cuda"):
            index = devices[0] if isinstance(devices, list) and len(devices) == 1 else 0
            return f"gpu:{index}"
        return "auto"

    # --- read-only during a run ------------------------------------------------------------

    def set_locked(self, locked: bool) -> None:
        """Read-only (True) while a run trains, with a note saying so; False: editable again.
        Save YAML stays available (it writes the settings shown); Load is refused."""
        self._locked = bool(locked)
        for field in self._all_fields():
            field.set_read_only(self._locked)
        for widget in (self.dataset, self.net, self.optimizer, self.scheduler, self.device,
                       self.load_button, self.browse_button):
            widget.setEnabled(not self._locked)
        self.locked_note.setVisible(self._locked)

    def is_locked(self) -> bool:
        return self._locked

    def _all_fields(self) -> list[ParamField]:
        return [self.data_dir, *self._fields.values(), *self._net_fields.values(),
                *self._opt_fields.values(), *self._sched_fields.values()]

    # --- config in and out -----------------------------------------------------------------

    def load_config(self, config: dict) -> None:
        """Show a config (the CLI's YAML as a dict); keys the form has no field for are kept."""
        self._base = copy.deepcopy(config or {})
        c = self._base
        self.dataset.setCurrentText(str(get_path(c, "data.name", "mnist")))
        self.data_dir.set_value(get_path(c, "data.data_dir"))
        for path, field in self._fields.items():
            default = next(d for p, _, d in _DATA + _REGULARIZATION + _TRAINING if p == path)
            field.set_value(get_path(c, path, default))
        for combo, path, default, handler in (
                (self.net, "model.net", "mlp", self._on_net),
                (self.optimizer, "model.optimizer", "sgd", self._on_optimizer),
                (self.scheduler, "model.scheduler", "constant", self._on_scheduler)):
            name = str(get_path(c, path, default))
            if combo.findText(name) < 0:
                combo.addItem(name)  # unknown names reach prepare_fit, which lists the valid ones
            combo.blockSignals(True)
            combo.setCurrentText(name)
            combo.blockSignals(False)
            if name in (NET_OPTIONS if combo is self.net else SCHEDULER_OPTIONS if combo is self.scheduler
                        else optim.names()):
                handler(name)
        self._select_device(self._device_of(c))

    def errors(self) -> list[str]:
        return [err for f in self._all_fields() if (err := f.error())]

    def to_config(self) -> dict:
        """The form as a config dict; FormError lists every invalid field."""
        problems = self.errors()
        if problems:
            raise FormError("\n".join(problems))
        c = copy.deepcopy(self._base)
        base = self._base
        self._put(c, "data.name", self.dataset.currentText(), "mnist")
        self._put(c, "data.data_dir", self.data_dir.value(), None)
        for path, _hp, default in _DATA + _REGULARIZATION + _TRAINING:
            self._put(c, path, self._fields[path].value(), default)

        net = self.net.currentText()
        self._put(c, "model.net", net, "mlp")
        self._sub_args(c, "model.net_args", net == get_path(base, "model.net", "mlp"),
                       {k: self._net_value(k, f) for k, f in self._net_fields.items()}, NET_OPTIONS.get(net, ()))

        name = self.optimizer.currentText()
        self._put(c, "model.optimizer", name, "sgd")
        same = name == get_path(base, "model.optimizer", "sgd")
        if self.lr is not None:
            lr = self.lr.value()
            if lr != self.lr.hp.default or (same and has_path(base, "model.lr")):
                set_path(c, "model.lr", lr)
            else:
                pop_path(c, "model.lr")
        elif not same:
            pop_path(c, "model.lr")
        args = {k: f.value() for k, f in self._opt_fields.items() if k != "lr"}
        hps = [f.hp for k, f in self._opt_fields.items() if k != "lr"]
        self._sub_args(c, "model.optimizer_args", same, args, hps)

        sched = self.scheduler.currentText()
        self._put(c, "model.scheduler", sched, "constant")
        self._sub_args(c, "model.scheduler_args", sched == get_path(base, "model.scheduler", "constant"),
                       {k: f.value() for k, f in self._sched_fields.items()}, SCHEDULER_OPTIONS.get(sched, ()))

        device = self.device.currentData() or "auto"
        if device == "auto" and self._device_of(self._base) not in ("auto", "multi"):
            pop_path(c, "trainer.accelerator")
            pop_path(c, "trainer.devices")
        elif device == "cpu":
            set_path(c, "trainer.accelerator", "cpu")
            set_path(c, "trainer.devices", 1)
        elif device.startswith("gpu:"):
            set_path(c, "trainer.accelerator", "gpu")
            set_path(c, "trainer.devices", [int(device[4:])])
        problem = device_problem(c.get("trainer") or {})
        if problem:
            raise FormError(problem)
        return c

    def _net_value(self, key: str, field: ParamField) -> Any:
        value = field.value()
        if key == "hidden" and isinstance(value, str) and value.strip() not in ("deep", "shallow"):
            try:
                return [int(s) for s in value.strip("[] ").replace(",", " ").split()]
            except ValueError:
                raise FormError(f"hidden must be 'deep', 'shallow' or widths such as 256, 128; "
                                f"got {value!r}") from None
        return value

    def _put(self, c: dict, path: str, value: Any, default: Any) -> None:
        if value is None and default is None:
            pop_path(c, path)
        elif value != default or has_path(self._base, path):
            set_path(c, path, value)

    def _sub_args(self, c: dict, path: str, same: bool, values: dict, hps) -> None:
        """Write an options dict: keep the loaded file's other keys only for the same name."""
        old = dict(get_path(self._base, path, {}) or {}) if same else {}
        defaults = {hp.name: hp.default for hp in hps}
        out = {k: v for k, v in old.items() if k not in values}
        for key, value in values.items():
            default = defaults.get(key)
            default = list(default) if isinstance(default, tuple) else default
            if value != default or key in old:
                out[key] = value
        if out or has_path(self._base, path) and same:
            set_path(c, path, out)
        else:
            pop_path(c, path)

    # --- files -------------------------------------------------------------------------------

    def load(self, path: str | Path) -> None:
        """Fill the form from a YAML config; `info_message` says "Loaded FILE"."""
        import yaml

        self.load_config(yaml.safe_load(Path(path).read_text()) or {})
        shown = _shown_path(path)
        self.source_label.setText(f"loaded {shown}")
        self.source_label.setToolTip(str(Path(path).resolve()))
        self.source_label.setVisible(True)
        self.info_message.emit(f"Loaded {shown}")

    def save(self, path: str | Path) -> None:
        """Write the form as a YAML config; `info_message` says "Saved FILE"."""
        import yaml

        Path(path).write_text(yaml.safe_dump(self.to_config(), sort_keys=False))
        self.info_message.emit(f"Saved {_shown_path(path)}")

    @Slot()
    def _ask_load(self) -> None:
        if self._locked:  # the File menu reaches here too
            self.info_message.emit("The form shows the running run's settings: load a config once it ends.")
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load config", "configs", "YAML (*.yaml *.yml)")
        if path:
            try:
                self.load(path)
            except Exception as exc:  # malformed YAML: a message, never a crash
                self.error_message.emit(f"Could not read {path}: {exc}")

    @Slot()
    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save config", "config.yaml", "YAML (*.yaml *.yml)")
        if path:
            try:
                self.save(path)
            except Exception as exc:
                self.error_message.emit(f"Could not save {path}: {exc}")

    @Slot()
    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Data folder")
        if path:
            self.data_dir.set_value(path)


def _shown_path(path: str | Path) -> str:
    """A path as people read it: relative to the working folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
