"""Read finished run folders and aggregate them: groups of trials that differ only by seed.

    runs = find_runs(["studies/l2"])                  # a study folder, run folders, or folders of them
    groups = group_runs(runs)                         # config minus the seed -> its runs
    groups[0].label, groups[0].stat("test/acc")       # 'l2=1e-05', (mean, std)

The files `fit` writes are read through lit_opt/run_files.py (config.yaml, summary.json,
epochs.csv, confusion_test.csv, diverged.json); the study's own study.json here. Plain
Python: no torch, no matplotlib. Standard deviations are sample ones (n - 1), empty for
one seed.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from lit_opt.run_files import (CONFIG, DIVERGED, SUMMARY, is_run_folder, number, read_confusion, read_epochs,
                               read_json, read_yaml, run_state)
from lit_opt.studies.spec import SEED_KEY, label_value, short_key

DIVERGED_FILE = DIVERGED
STUDY_FILE = "study.json"
# keys that do not make two runs different experiments
IGNORED = {SEED_KEY, "data.shuffle_seed", "data.download", "run.name", "run.root", "run.test", "ckpt_path",
           "weights_only", "trainer.callbacks", "trainer.logger", "trainer.enable_progress_bar",
           "trainer.enable_model_summary", "trainer.default_root_dir", "trainer.plugins",
           "model.channels_last", "model.compile", "data.on_device"}  # how a trial ran, not what it was
ORDER = ("data.name", "data.data_dir", "model.net", "model.net_args", "model.optimizer", "model.optimizer_args",
         "model.lr")


trial_state = run_state  # a trial's state is its run folder's


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """{'model': {'net_args': {'hidden': [1]}}} -> {'model.net_args.hidden': [1]}"""
    flat: dict[str, Any] = {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = None if value == {} else value
    return flat


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass
class Run:
    path: Path
    state: str
    config: dict[str, Any] = field(default_factory=dict)  # flattened
    summary: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Optional[float]]] = field(default_factory=list)
    diverged: Optional[dict] = None
    command: str = ""
    class_acc: Optional[dict[str, float]] = None  # test accuracy per class (confusion_test.csv)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def seed(self):
        return self.config.get(SEED_KEY)

    def series(self, key: str) -> list[Optional[float]]:
        return [row.get(key) for row in self.epochs]

    def metric(self, key: str) -> Optional[float]:
        """test/acc, test/loss, best_val_acc, best_epoch, epochs, epoch_time (mean over epochs)."""
        if key == "best_epoch":
            accs = self.series("val/acc")
            known = [(a, -i) for i, a in enumerate(accs) if a is not None]
            return float(-max(known)[1] + 1) if known else None
        if key == "epoch_time":
            times = [t for t in self.series("train/epoch_time") if t is not None]
            return statistics.fmean(times) if times else None
        if key == "epochs":
            return number(self.summary.get("epochs", len(self.epochs)))
        return number(self.summary.get(key))

    def to_target(self, target: float) -> tuple[Optional[int], Optional[float]]:
        """Epochs and training seconds (validation excluded) until val/acc first reached `target`."""
        seconds = 0.0
        for i, row in enumerate(self.epochs):
            seconds += row.get("train/epoch_time") or 0.0
            if row.get("val/acc") is not None and row["val/acc"] >= target:
                return i + 1, seconds
        return None, None


def _class_acc(path: Path) -> Optional[dict[str, float]]:
    confusion = read_confusion(path)
    return None if confusion is None else dict(zip(confusion[0], confusion[2]))


def load_run(path: Path, command: str = "") -> Run:
    path = Path(path)
    state = trial_state(path)
    run = Run(path, state, command=command)
    run.config = flatten(read_yaml(path / CONFIG))
    if state == "finished":
        run.summary = read_json(path / SUMMARY) or {}
    if state == "diverged":
        run.diverged = read_json(path / DIVERGED_FILE)
    run.epochs = read_epochs(path)
    run.class_acc = _class_acc(path / "confusion_test.csv")
    if not run.command and run.config:
        run.command = (f"python -m lit_opt fit --config {path / 'config.yaml'} --run.root RUNS "
                       f"--run.name {path.name}")
    return run


def find_runs(paths: Iterable[Path]) -> tuple[list[Run], list[dict]]:
    """Runs in the given paths (run folders, study folders, folders of run folders), and the
    study.json of each study folder among them."""
    runs: list[Run] = []
    studies: list[dict] = []
    seen: set[Path] = set()

    def add(run: Run) -> None:
        key = run.path.resolve()
        if key not in seen:
            seen.add(key)
            runs.append(run)

    for path in map(Path, paths):
        if is_run_folder(path):
            add(load_run(path))
        elif (path / STUDY_FILE).is_file():
            study = json.loads((path / STUDY_FILE).read_text())
            studies.append({**study, "path": str(path)})
            for trial in study.get("trials", []):
                add(load_run(path / trial["name"], trial.get("command", "")))
        elif path.is_dir():
            for sub in sorted(p for p in path.iterdir() if is_run_folder(p)):
                add(load_run(sub))
        else:
            raise FileNotFoundError(f"{path}: no such run folder or study folder")
    return runs, studies


def varying_keys(runs: list[Run], first: Iterable[str] = ()) -> list[str]:
    """Config keys whose values differ between the runs (seed and bookkeeping keys aside)."""
    configs = [r.config for r in runs if r.config]
    keys = sorted({k for c in configs for k in c} - IGNORED)
    varying = [k for k in keys if len({canonical(c.get(k)) for c in configs}) > 1]

    def rank(key: str):
        for i, prefix in enumerate([*first, *ORDER]):
            if key == prefix or key.startswith(prefix + "."):
                return (i, key)
        return (len(ORDER) + 100, key)

    return sorted(varying, key=rank)


def numeric(value) -> Optional[float]:
    """A number to plot a value at: numbers, and lists of one repeated number (widths 50x50x50 -> 50)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value) \
            and len(set(value)) == 1:
        return float(value[0])
    return None


def mean_std(values: Iterable[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    xs = [v for v in values if v is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


@dataclass
class Group:
    values: dict[str, Any]  # varying key -> value
    runs: list[Run]
    selected: bool = True  # compare: the chosen learning rate of its optimizer

    @property
    def label(self) -> str:
        return ", ".join(f"{short_key(k)}={label_value(v)}" for k, v in self.values.items()
                         if k != "data.data_dir" and v is not None) or "all runs"

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.state == "finished"]

    @property
    def diverged(self) -> list[Run]:
        return [r for r in self.runs if r.state == "diverged"]

    def stat(self, key: str) -> tuple[Optional[float], Optional[float]]:
        """Mean and std over the finished runs of run.metric(key)."""
        return mean_std(r.metric(key) for r in self.finished)

    def to_target(self, target: float) -> tuple[Optional[float], Optional[float], int]:
        """Mean epochs and seconds to target over the finished runs that reached it, and how many did."""
        hits = [r.to_target(target) for r in self.finished]
        hits = [h for h in hits if h[0] is not None]
        if not hits:
            return None, None, 0
        return statistics.fmean(h[0] for h in hits), statistics.fmean(h[1] for h in hits), len(hits)

    def curve(self, key: str) -> tuple[list[int], list[float], list[Optional[float]]]:
        """Per epoch (1-based): mean and std over the finished runs that have that epoch."""
        series = [r.series(key) for r in self.finished]
        epochs, means, stds = [], [], []
        for i in range(max((len(s) for s in series), default=0)):
            m, s = mean_std(x[i] for x in series if i < len(x))
            if m is not None:
                epochs.append(i + 1)
                means.append(m)
                stds.append(s)
        return epochs, means, stds

    def class_acc(self) -> dict[str, float]:
        per_class: dict[str, list[float]] = {}
        for run in self.finished:
            for name, acc in (run.class_acc or {}).items():
                if acc is not None:
                    per_class.setdefault(name, []).append(acc)
        return {k: statistics.fmean(v) for k, v in per_class.items()}


def group_runs(runs: list[Run], keys: Optional[list[str]] = None) -> list[Group]:
    """Group runs by their values of `keys` (default: every key that varies), in the order the
    values first appear (a study's order), numbers ascending within a key."""
    keys = varying_keys(runs) if keys is None else keys
    groups: dict[str, Group] = {}
    for run in runs:
        values = {k: run.config.get(k) for k in keys}
        groups.setdefault(canonical(values), Group(values, [])).runs.append(run)
    first_seen = {k: {} for k in keys}
    for g in groups.values():
        for k in keys:
            first_seen[k].setdefault(canonical(g.values[k]), len(first_seen[k]))

    def order(g: Group):
        out = []
        for k in keys:
            num = numeric(g.values[k])
            out.append((0, num, 0) if num is not None else (1, 0.0, first_seen[k][canonical(g.values[k])]))
        return out

    return sorted(groups.values(), key=order)
