"""The stream's rows on disk: every training batch in steps.csv, every epoch in epochs.csv.

A listener of lit_opt/stream.py, so a run folder holds exactly what the live views showed;
`lit_opt.run_files.read_steps` reads steps.csv back into the same rows, and the app draws a
reopened run with the same code as a live one. steps.csv: one row per training batch, the
columns batches, step, epoch, batch, time, then one per scalar series and one per element of a
vector series, named `series[element]` (`train/grad_norm[dense 784->100]`); values with 9
significant digits, which is every digit a float32 has. A resumed run first drops the rows
written after its checkpoint, so no batch is ever listed twice. Steering changes made while
training go into config.yaml's `run.steering` (lit_opt/steering.py). Histogram series (per
layer [min, max, sum, sumsq, counts...]) go to histograms.jsonl, a JSON line per row that has
them, after a first line naming each series' layers.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from lit_opt.run_files import EPOCHS, HISTOGRAMS, STEPS, read_epochs
from lit_opt.stream import Listener

BASE_COLUMNS = ("batches", "step", "epoch", "batch", "time")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".9g")
    return str(value)


class RunFolderWriter(Listener):
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._elements: dict[str, list[str]] = {}
        self._columns: Optional[list[str]] = None
        self._epochs_written: set[int] = set()

    def on_start(self, info: dict) -> None:
        from lit_opt.callbacks import keep_rows

        self._elements = dict(info.get("elements") or {})
        kinds = info.get("kinds") or {}
        self._histograms = [n for n in info.get("series") or [] if kinds.get(n) == "histogram"]
        declared = list(BASE_COLUMNS)  # every series of the run, even one a first row lacks
        for name in info.get("series") or []:
            if name in self._histograms:  # not a column: histograms.jsonl
                continue
            declared += [f"{name}[{e}]" for e in self._elements[name]] if name in self._elements else [name]
        steps, epochs = self.run_dir / STEPS, self.run_dir / EPOCHS
        if info["batches"] > 0:  # a resume: the files describe exactly what the checkpoint holds
            keep_rows(steps, lambda row: int(row["batches"]) <= info["batches"])
            keep_lines(self.run_dir / HISTOGRAMS, lambda row: "elements" in row or row["batches"] <= info["batches"])
            keep_rows(epochs, lambda row: int(row["step"]) <= info["global_step"])
        self._columns = declared
        if steps.is_file():
            with steps.open(newline="") as f:
                self._columns = next(csv.reader(f), None) or declared
        self._epochs_written = {int(r["epoch"]) for r in read_epochs(self.run_dir) if r.get("epoch") is not None}

    def _flat(self, row: dict) -> dict:
        flat = {}
        for key, value in row.items():
            names = self._elements.get(key)
            if names is not None and isinstance(value, (list, tuple)):
                flat.update({f"{key}[{n}]": v for n, v in zip(names, value)})
            else:
                flat[key] = value
        return flat

    def on_steps(self, rows: list[dict]) -> None:
        if self._histograms:
            self._write_histograms(rows)
        flat = [self._flat(row) for row in rows]
        path = self.run_dir / STEPS
        new = not path.is_file()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in flat)

    def _write_histograms(self, rows: list[dict]) -> None:
        """One JSON line per row that has histograms (plain numbers: reading it runs nothing);
        the first line names each series' layers."""
        import json

        picked = [{**{k: row[k] for k in ("batches", "step", "epoch")},
                   **{n: row[n] for n in self._histograms if row.get(n) is not None}} for row in rows
                  if any(row.get(n) is not None for n in self._histograms)]
        if not picked:
            return
        path = self.run_dir / HISTOGRAMS
        new = not path.is_file()
        with path.open("a") as f:
            if new:
                f.write(json.dumps({"elements": {n: self._elements.get(n, []) for n in self._histograms}}) + "\n")
            for row in picked:
                f.write(json.dumps(row, allow_nan=True) + "\n")

    def on_steer(self, changes: list[dict]) -> None:
        """Record the run's steering in its config.yaml (`run.steering`), so `fit --config` of
        this run applies the same changes at the same steps. Rewritten whole and atomically."""
        import os

        import yaml

        path = self.run_dir / "config.yaml"
        if not path.is_file():
            return
        config = yaml.safe_load(path.read_text()) or {}
        config.setdefault("run", {})["steering"] = [dict(c) for c in changes]
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, path)

    def on_epoch(self, row: dict) -> None:
        scalars = {k: v for k, v in row.items() if k not in ("val/confusion", "weights")}
        if scalars["epoch"] in self._epochs_written:  # its end runs again after a resume from a
            return                                   # checkpoint saved in its last validation
        self._epochs_written.add(scalars["epoch"])
        path = self.run_dir / EPOCHS
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(scalars))
            if new:
                writer.writeheader()
            writer.writerow({k: "" if v is None else v for k, v in scalars.items()})


def keep_lines(path: Path, keep) -> None:
    """Rewrite a JSON-lines file with only the rows `keep` accepts (atomically); damaged lines go."""
    import json
    import os

    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            if keep(json.loads(line)):
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    if len(kept) == len(lines):
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)
