"""What the app knows about one run: its curves, latest weights and confusion matrix.

A `RunRecord` is filled live from the live stream's rows (lit_opt/stream.py: one row per
training batch, one per epoch) or read from a run folder written by the CLI or an earlier
session (docs/reference.md) through lit_opt/run_files.py: steps.csv (the same step rows),
epochs.csv (the same epoch rows), config.yaml, confusion_val.csv, summary.json, last.ckpt.
Both go through `add_steps`/`add_epoch`, so a reopened run holds exactly what the live run
held. Every step series is kept, in compact arrays (8 bytes a value). Plain Python and
numpy; reading weights from a checkpoint needs torch, imported on call.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lit_opt.run_files import (CONFIG, DIVERGED, HPARAMS, METRICS, STEP_INDEX, SUMMARY, checkpoint_contents, number,
                               read_confusion, read_epochs, read_histograms, read_json, read_rows, read_steps, read_yaml,
                               run_state)

NOTE = "note.txt"  # the user's free-text note about a run, kept in its folder
# What the run list says about a run: running (in this app now), stopped (a last.ckpt resumes
# it), finished (summary.json), diverged (diverged.json), failed (none of these).
STATUSES = ("running", "stopped", "finished", "diverged", "failed")


def optimizer_values(model: dict) -> dict:
    """A run's optimizer settings complete with the registry's defaults (lr, momentum or betas,
    weight decay, ...), from its config's model section; {} when they do not validate."""
    from lit_opt.optim import registry

    args = dict(model.get("optimizer_args") or {})
    for key in ("lr", "weight_decay"):
        if model.get(key) is not None:
            args[key] = model[key]
    try:
        return registry.validate(model.get("optimizer") or "sgd", **args)
    except (ValueError, TypeError):
        return {}


@dataclass
class RunRecord:
    run_dir: Path
    config: dict = field(default_factory=dict)
    status: str = "failed"  # one of STATUSES
    message: str = ""  # why it stopped, diverged or failed (the run list's tooltip)
    # per training step: x is the step number (batches trained, 1-based); epoch and batch
    # (0-based) and the seconds since training began, for the other x axes
    step_x: array = field(default_factory=lambda: array("d"))
    step_loss: array = field(default_factory=lambda: array("d"))
    step_epoch: array = field(default_factory=lambda: array("d"))
    step_batch: array = field(default_factory=lambda: array("d"))
    step_time: array = field(default_factory=lambda: array("d"))
    # every step series: name -> (x, values); a vector series' values are flat, a row per x
    steps: dict[str, tuple[array, array]] = field(default_factory=dict)
    elements: dict[str, list[str]] = field(default_factory=dict)  # vector series: element names
    # histogram series ("hist/weights", ...): name -> [(x, per layer [min, max, sum, sumsq, counts...])]
    histograms: dict[str, list] = field(default_factory=dict)
    # per epoch
    epochs: list[dict[str, Any]] = field(default_factory=list)
    confusion: Optional[np.ndarray] = None
    confusion_when: str = ""  # which epoch the confusion matrix is from ("epoch 3's validation")
    weights: Optional[dict[str, np.ndarray]] = None
    weights_when: str = ""  # which point of training the weights are from ("after epoch 3")
    summary: Optional[dict] = None
    loaded: bool = False  # files read (saved runs are read when first shown)

    # --- labels --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.run_dir.name

    def _model(self) -> dict:
        return self.config.get("model") or {}

    @property
    def optimizer(self) -> str:
        return str(self._model().get("optimizer", "sgd"))

    @property
    def lr(self) -> Optional[float]:
        lr = self._model().get("lr")
        if lr is None:  # the optimizer's default, as the run used it
            try:
                from lit_opt import optim

                lr = optim.info(self.optimizer).hyperparameter("lr").default
            except (ValueError, KeyError):
                return None
        return float(lr)

    @property
    def label(self) -> str:
        """A one-run title: optimizer, learning rate, net and dataset (a comparison labels runs
        by the settings that differ between them: gui/comparison.py)."""
        lr = self.lr
        opt = f"{self.optimizer} lr {lr:g}" if lr is not None else self.optimizer
        return f"{opt}, {self.net} on {self.dataset}"

    @property
    def batch_size(self) -> int:
        return int((self.config.get("data") or {}).get("batch_size") or 100)

    @property
    def seed(self) -> Optional[int]:
        seed = self.config.get("seed_everything")
        return None if seed is None or seed is True or seed is False else int(seed)

    @property
    def dataset(self) -> str:
        return str((self.config.get("data") or {}).get("name", "mnist"))

    @property
    def net(self) -> str:
        return str(self._model().get("net", "mlp"))

    @property
    def steering(self) -> list[dict]:
        """The changes made while it trained ([{"step", "lr_factor", ...}], lit_opt/steering.py)."""
        return list((self.config.get("run") or {}).get("steering") or [])

    @property
    def l2(self) -> float:
        return float(self._model().get("l2") or 0.0)

    @property
    def class_names(self) -> list[str]:
        info = self._model().get("data_info") or {}
        if info.get("class_names"):
            return [str(c) for c in info["class_names"]]
        if self.confusion is not None:
            return [str(i) for i in range(len(self.confusion))]
        return []

    @property
    def input_shape(self) -> Optional[tuple[int, ...]]:
        info = self._model().get("data_info") or {}
        shape = info.get("input_shape")
        if shape:
            return tuple(int(s) for s in shape)
        from lit_opt.declarations import DATASETS

        spec = DATASETS.get(self.dataset)
        return spec.input_shape if spec is not None else None

    @property
    def best_val_acc(self) -> Optional[float]:
        if self.summary and self.summary.get("best_val_acc") is not None:
            return float(self.summary["best_val_acc"])
        accs = [e["val/acc"] for e in self.epochs if e.get("val/acc") is not None]
        return max(accs) if accs else None

    def checkpoint(self) -> Optional[Path]:
        """The checkpoint that resumes this run (last.ckpt), if there is one."""
        path = self.run_dir / "last.ckpt"
        return path if path.is_file() else None

    def best_checkpoint(self) -> Optional[Path]:
        for name in ("best.ckpt", "last.ckpt"):
            if (self.run_dir / name).is_file():
                return self.run_dir / name
        return None

    # --- live data -------------------------------------------------------------------------

    def add_steps(self, rows: list[dict]) -> None:
        """The live stream's step rows (lit_opt/stream.py), or the same rows read from steps.csv.
        x is the row's "batches": batches trained so far in the run, 1-based."""
        for row in rows:
            x = float(row["batches"])
            for key, value in row.items():
                if key in STEP_INDEX or value is None:
                    continue
                if key.startswith("hist/"):
                    self.histograms.setdefault(key, []).append((x, value))
                    continue
                xs, ys = self.steps.get(key) or self.steps.setdefault(key, (array("d"), array("d")))
                xs.append(x)
                if isinstance(value, (list, tuple)):
                    ys.extend(math.nan if v is None else float(v) for v in value)
                else:
                    ys.append(float(value))
            loss = row.get("train/loss")
            if loss is not None:
                self.step_x.append(x)
                self.step_loss.append(float(loss))
                self.step_epoch.append(float(row.get("epoch") or 0))
                self.step_batch.append(float(row.get("batch") if row.get("batch") is not None else x - 1))
                self.step_time.append(float(row.get("time") or math.nan))

    def latest_step_text(self) -> str:
        """"epoch 3, step 1290": where the latest recorded step is (epochs from 1)."""
        if not len(self.step_x):
            return ""
        return f"epoch {int(self.step_epoch[-1]) + 1}, step {int(self.step_x[-1])}"

    def step_series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, values) of a step series: values 1-D for a scalar, (rows, elements) for a vector."""
        xs, ys = self.steps.get(name, (array("d"), array("d")))
        x, y = np.frombuffer(xs, float).copy(), np.frombuffer(ys, float).copy()
        if name in self.elements and len(x):
            y = y.reshape(len(x), -1)
        return x, y

    def add_epoch(self, row: dict) -> None:
        scalars = {k: v for k, v in row.items() if k not in ("val/confusion", "weights")}
        epoch = scalars.get("epoch")
        if row.get("weights") is not None:
            self.weights = row["weights"]
            self.weights_when = f"after epoch {epoch + 1}" if epoch is not None else ""
            if self.l2 and scalars.get("train/l2") is None:
                # lambda * sum(w^2) of the Linear/Conv weights at the epoch's end: the L2 term
                # as the model computes it when biases are not regularized (the default).
                scalars["l2_term"] = self.l2 * float(sum(float(np.square(w, dtype=np.float64).sum())
                                                         for w in row["weights"].values()))
        if row.get("val/confusion") is not None:
            self.confusion = np.asarray(row["val/confusion"])
            self.confusion_when = f"epoch {epoch + 1}'s validation" if epoch is not None else ""
        self.epochs = [e for e in self.epochs if e.get("epoch") != scalars.get("epoch")] + [scalars]

    def epoch_series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(epoch numbers, 1-based; values) of an epoch metric, skipping missing values."""
        pts = [(e["epoch"] + 1, e[key]) for e in self.epochs if e.get(key) is not None]
        return (np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float))

    def epoch_end_series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(step at the epoch's end; values) of an epoch metric, to draw beside the step losses."""
        pts = [(e["step"], e[key]) for e in self.epochs if e.get(key) is not None and e.get("step") is not None]
        return (np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float))

    # --- saved runs ------------------------------------------------------------------------

    @classmethod
    def from_folder(cls, run_dir: Path) -> "RunRecord":
        """A record with its config and summary read (cheap); `load()` reads the rest."""
        run_dir = Path(run_dir)
        rec = cls(run_dir, read_yaml(run_dir / CONFIG))
        hparams = read_yaml(run_dir / HPARAMS)
        if hparams.get("data_info"):
            rec.config.setdefault("model", {})["data_info"] = hparams["data_info"]
        rec.summary = read_json(run_dir / SUMMARY)
        rec.status = folder_status(run_dir)
        # epochs.csv is small: read now, so the run list shows epochs and best accuracy at once
        rec.epochs = [{**row, "epoch": int(row["epoch"])} for row in read_epochs(run_dir)
                      if row.get("epoch") is not None]
        if rec.status == "diverged":
            rec.message = str((read_json(run_dir / DIVERGED) or {}).get("message", ""))
        return rec

    # --- the user's note -----------------------------------------------------------------------

    def note(self) -> str:
        try:
            return (self.run_dir / NOTE).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""

    def save_note(self, text: str) -> None:
        """Write note.txt in the run folder (replaced whole, so a crash leaves the old note);
        an empty note removes the file."""
        path = self.run_dir / NOTE
        if not text.strip():
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(f".{NOTE}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    def load(self) -> None:
        """Read curves, epochs and the confusion matrix from the run folder; weights from last.ckpt."""
        if self.loaded:
            return
        self.loaded = True
        self._load_metrics()
        self._load_confusion()
        self._load_weights()

    def _load_metrics(self) -> None:
        """Step rows from steps.csv, epoch rows from epochs.csv: the rows the live run sent.
        A run from before steps.csv existed has only the logged step losses (metrics.csv,
        every log_every_n_steps)."""
        rows, elements = read_steps(self.run_dir)
        self.elements.update(elements)
        self.add_steps(rows)
        hist_rows, hist_elements = read_histograms(self.run_dir)
        self.elements.update(hist_elements)
        self.add_steps(hist_rows)
        if not rows:
            for row in read_rows(self.run_dir / METRICS):
                step, loss = number(row.get("step")), number(row.get("train/loss_step"))
                if step is not None and loss is not None:
                    self.add_steps([{"batches": int(step) + 1, "train/loss": loss}])
        self.epochs = [{**row, "epoch": int(row["epoch"])} for row in read_epochs(self.run_dir)
                       if row.get("epoch") is not None]

    def _load_confusion(self) -> None:
        confusion = read_confusion(self.run_dir / "confusion_val.csv")
        if confusion is None:
            return
        names, counts, _ = confusion
        self.confusion = np.array(counts, dtype=np.int64)
        done = [e["epoch"] for e in self.epochs if e.get("val/acc") is not None]
        self.confusion_when = f"epoch {max(done) + 1}'s validation" if done else "the last validation"
        info = self.config.setdefault("model", {}).setdefault("data_info", {})
        info.setdefault("class_names", names)

    def _load_weights(self) -> None:
        ckpt = self.checkpoint() or self.best_checkpoint()
        contents = checkpoint_contents(ckpt) if ckpt is not None else None
        if contents is None:
            return
        self.weights = contents["weights"]
        step = contents.get("global_step")
        self.weights_when = f"from {ckpt.name}" + (f", step {step}" if step is not None else "")
        if contents["hyper_parameters"].get("data_info"):
            self.config.setdefault("model", {})["data_info"] = contents["hyper_parameters"]["data_info"]



def folder_status(run_dir: Path) -> str:
    """A saved run's status from its files: finished (summary.json), diverged (diverged.json),
    stopped (a last.ckpt resumes it), else failed (it ended before its first checkpoint)."""
    state = run_state(run_dir)
    if state in ("finished", "diverged"):
        return state
    return "stopped" if (Path(run_dir) / "last.ckpt").is_file() else "failed"
