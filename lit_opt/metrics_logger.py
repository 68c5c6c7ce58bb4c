"""metrics.csv and hparams.yaml directly in a run folder, appended to when a run resumes.

Lightning's CSVLogger writes the same files, but deletes an existing metrics.csv whenever its
folder is not empty, which a resumed run's folder always is; keeping it would mean
overriding the logger's private writer. This logger uses Lightning's public Logger interface
only, and writes the file CSVLogger writes: one row per `log_metrics` call, its "step"
column, the other columns sorted, the header rewritten when a new key appears.
"""

from __future__ import annotations

import csv
import os
from argparse import Namespace
from pathlib import Path
from typing import Any, Optional, Union

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

METRICS_FILE, HPARAMS_FILE = "metrics.csv", "hparams.yaml"


class MetricsCSV(Logger):
    def __init__(self, run_dir: Union[str, Path]):
        super().__init__()
        self.run_dir = Path(run_dir)
        self._rows: list[dict[str, Any]] = []
        self._keys: Optional[list[str]] = None
        self._hparams: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @property
    def log_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params: Union[dict[str, Any], Namespace, None] = None, *args, **kwargs) -> None:
        from lightning.pytorch.core.saving import save_hparams_to_yaml

        self._hparams.update(vars(params) if isinstance(params, Namespace) else dict(params or {}))
        save_hparams_to_yaml(self.run_dir / HPARAMS_FILE, self._hparams)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        row = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}
        row["step"] = step if step is not None else len(self._rows)
        self._rows.append(row)

    @rank_zero_only
    def save(self) -> None:
        if not self._rows:
            return
        path = self.run_dir / METRICS_FILE
        exists = path.is_file()
        if self._keys is None:
            self._keys = []
            if exists:
                with path.open(newline="") as f:
                    self._keys = next(csv.reader(f), [])
        new = set().union(*self._rows) - set(self._keys)
        if new:
            self._keys = sorted(set(self._keys) | new)
            if exists:  # the header changes: write the file again with the new columns
                with path.open(newline="") as f:
                    old = list(csv.DictReader(f))
                tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
                with tmp.open("w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=self._keys)
                    writer.writeheader()
                    writer.writerows(old)
                os.replace(tmp, path)
        exists = path.is_file()
        with path.open("a" if exists else "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._keys)
            if not exists:
                writer.writeheader()
            writer.writerows(self._rows)
        self._rows = []

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()
