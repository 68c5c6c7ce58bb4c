"""The docs' tables of choices are the declarations (lit_opt/declarations/, the optimizer
registry): a new dataset, net, schedule or optimizer that the docs do not list fails here."""

from __future__ import annotations

import re
from pathlib import Path

from lit_opt import declarations, optim

ROOT = Path(__file__).resolve().parents[1]


def _reference_row(key: str) -> list[str]:
    """The names in backticks in the meaning column of docs/reference.md's row for `key`."""
    text = (ROOT / "docs" / "reference.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
    meaning = row.split("|")[3]
    return [w for chunk in re.findall(r"`([^`]+)`", meaning) for w in chunk.split()]


def test_the_reference_tables_list_exactly_the_declared_choices():
    assert set(_reference_row("model.net")) == set(declarations.NETS)
    assert set(_reference_row("data.name")) == set(declarations.DATASETS)
    schedulers = _reference_row("model.scheduler")
    assert {s for s in schedulers if s in declarations.SCHEDULER_OPTIONS} == set(declarations.SCHEDULER_OPTIONS)
    assert set(_reference_row("model.optimizer")) == set(optim.names())


def _first_column(path: Path, header: str) -> list[str]:
    """Names in the first column of the table under `header` (comma-separated cells)."""
    lines = path.read_text().splitlines()
    start = lines.index(header)
    names = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| name") and not line.startswith("| ---"):
            names += [n.strip(" `") for n in line.split("|")[1].split(",")]
    return names


def test_the_readme_and_optimizer_doc_tables_list_every_optimizer():
    assert sorted(_first_column(ROOT / "README.md", "## Optimizers")) == sorted(optim.names())
    doc = ROOT / "docs" / "optimizers.md"
    header = next(line for line in doc.read_text().splitlines() if line.startswith("#") and "|" not in line)
    assert set(optim.names()) <= set(_first_column(doc, header))
