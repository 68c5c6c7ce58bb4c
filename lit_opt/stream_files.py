"""The stream's rows on disk: every training batch in steps.csv, every epoch in epochs.csv.

A listener of lit_opt/stream.py, so a run folder holds exactly what the live views showed;
`lit_opt.run_files.read_steps` reads steps.csv back into the same rows, and the app draws a
reopened run with the same code as a live one. steps.csv: one row per training batch, the
columns batches, step, epoch, batch, time, then one per scalar series and one per element of a
vector series, named `series[element]` (`train/grad_norm[dense 784->100]`); values with 9
significant digits, which is every digit a float32 has. A resumed run first drops the rows
written after its checkpoint, so no batch is ever listed twice. Steering changes made while
training go into config.yaml's `run.steering` (lit_opt/steering.py).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from lit_opt.run_files import EPOCHS, STEPS, read_epochs
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
        declared = list(BASE_COLUMNS)  # every series of the run, even one a first row lacks
        for name in info.get("series") or []:
            declared += [f"{name}[{e}]" for e in self._elements[name]] if name in self._elements else [name]
        steps, epochs = self.run_dir / STEPS, self.run_dir / EPOCHS
        if info["batches"] > 0:  # a resume: the files describe exactly what the checkpoint holds
            keep_rows(steps, lambda row: int(row["batches"]) <= info["batches"])
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
        flat = [self._flat(row) for row in rows]
        path = self.run_dir / STEPS
        new = not path.is_file()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in flat)

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
