"""Reading a run folder: the one reader of the files `fit` writes (layout: docs/reference.md),
used by the desktop app's run list, `report` and the studies. Plain Python (csv, json,
PyYAML): no torch, so the app reads folders on its GUI thread. Checkpoints have their own
reader, `lit_opt.inference.read_checkpoint` (weights only, checked); `checkpoint_contents`
here reads one once for a view.

Each value has one source file: every training batch's row in steps.csv (the live stream's
step series, lit_opt/stream_files.py), per-epoch rows in epochs.csv, logged series (every
`log_every_n_steps`) in metrics.csv (the only step losses of runs from before steps.csv), the result in summary.json, a divergence in
diverged.json, the resolved settings in config.yaml, the dataset's description in
hparams.yaml, confusion matrices in confusion_{val,test}.csv, per-layer histograms (every
`diagnostics.histograms_every` steps) in histograms.jsonl.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional

CONFIG, SUMMARY, DIVERGED, EPOCHS, METRICS, HPARAMS, STEPS, HISTOGRAMS = (
    "config.yaml", "summary.json", "diverged.json", "epochs.csv", "metrics.csv", "hparams.yaml", "steps.csv",
    "histograms.jsonl")
STEP_INDEX = ("batches", "step", "epoch", "batch")  # whole numbers in every step row


def number(text: Any) -> Optional[float]:
    """A finite float from a CSV/JSON cell; None for blanks, text, NaN and infinities."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def is_run_folder(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def find_run_folders(root: Path) -> list[Path]:
    """Run folders directly under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and is_run_folder(p)]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


def read_yaml(path: Path) -> dict:
    """A YAML mapping, or {} if the file is missing or unreadable (yaml.safe_load: data only)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_json(path: Path) -> Optional[dict]:
    """A JSON object, or None if the file is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header, as text; [] if the file is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_epochs(run_dir: Path) -> list[dict[str, Optional[float]]]:
    """epochs.csv: one row per epoch, every value a number or None."""
    return [{k: number(v) for k, v in row.items()} for row in read_rows(Path(run_dir) / EPOCHS)]


def read_steps(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """steps.csv as the live stream's rows (lit_opt/stream.py): ([row per batch], {vector
    series: element names}). Columns `name[element]` are regrouped into one list per row; a
    blank cell is a value the batch did not have (left out, as in the live row; NaN and inf are
    kept). ([], {}) for a run without steps.csv (written before it existed)."""
    path = Path(run_dir) / STEPS
    if not path.is_file():
        return [], {}
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        body = list(reader)
    elements: dict[str, list[str]] = {}
    columns = []  # (series, element index or None)
    for name in header:
        if name.endswith("]") and "[" in name:
            series, element = name[:-1].split("[", 1)
            columns.append((series, len(elements.setdefault(series, []))))
            elements[series].append(element)
        else:
            columns.append((name, None))
    rows = []
    for cells in body:
        if len(cells) != len(header):  # a line cut short by a crash
            continue
        row: dict[str, Any] = {}
        try:
            for (series, index), cell in zip(columns, cells):
                if cell == "":
                    continue
                if index is None:
                    row[series] = int(cell) if series in STEP_INDEX else float(cell)
                else:
                    row.setdefault(series, [None] * len(elements[series]))[index] = float(cell)
        except ValueError:  # not a number: a damaged line
            continue
        rows.append(row)
    return rows, elements


def read_histograms(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """histograms.jsonl as the live stream's histogram rows: ([{"batches", "step", "epoch",
    "hist/weights": [per layer [min, max, sum, sumsq, counts...]], ...}], {series: layer names}).
    A line cut short by a crash, or not a mapping, is skipped. ([], {}) without the file."""
    path = Path(run_dir) / HISTOGRAMS
    if not path.is_file():
        return [], {}
    rows, elements = [], {}
    with path.open() as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict):
                continue
            if "elements" in row:  # the header line: layer names per series
                elements = {str(k): [str(e) for e in v] for k, v in (row["elements"] or {}).items()}
                continue
            rows.append(row)
    return rows, elements


def read_confusion(path: Path) -> Optional[tuple[list[str], list[list[int]], list[Optional[float]]]]:
    """confusion_*.csv: (class names, counts with rows the true class, each class's accuracy)."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows or rows[0][-1] != "accuracy":
        return None
    names = rows[0][1:-1]
    counts = [[int(v) for v in row[1:-1]] for row in rows[1:]]
    return names, counts, [number(row[-1]) for row in rows[1:]]


def run_state(run_dir: Path) -> str:
    """finished (summary.json), diverged (diverged.json), interrupted (a run folder without
    either), or missing."""
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY).is_file():
        return "finished"
    if (run_dir / DIVERGED).is_file():
        return "diverged"
    return "interrupted" if run_dir.is_dir() else "missing"


def checkpoint_contents(ckpt: Path) -> Optional[dict[str, Any]]:
    """{"weights": {layer: array} of every dense/conv layer, "hyper_parameters": {...}} of a
    lit_opt checkpoint, read once through lit_opt's checked, weights-only reader; None if
    it cannot be read (the views then stay empty)."""
    from lit_opt.errors import CheckpointError
    from lit_opt.inference import read_checkpoint

    try:
        ckpt_dict = read_checkpoint(ckpt)
    except CheckpointError:
        return None
    state = ckpt_dict.get("state_dict") or {}
    weights = {key[len("net."):-len(".weight")]: value.float().numpy() for key, value in state.items()
               if key.startswith("net.") and key.endswith(".weight") and getattr(value, "ndim", 0) in (2, 4)}
    return {"weights": weights, "hyper_parameters": dict(ckpt_dict.get("hyper_parameters") or {}),
            "global_step": ckpt_dict.get("global_step")}
