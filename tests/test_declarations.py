"""Every user choice is declared once (lit_opt/declarations/, the optimizer registry), the
declarations load without torch (so the app's form opens at once), the code that builds each
choice matches its declaration, and a dataset declared in one place trains through the CLI.
The docs' tables of choices are checked against them in tests/test_docs_tables.py."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from lit_opt import declarations, optim

ROOT = Path(__file__).resolve().parents[1]


def test_the_declarations_and_the_registry_import_without_torch():
    code = ("import sys, lit_opt.declarations, lit_opt.optim, lit_opt.found_config; "
            "heavy = [m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_every_declared_net_has_a_builder_with_exactly_the_declared_options():
    from lit_opt import nets

    assert list(nets.NETS) == list(declarations.NETS)
    for name, spec in declarations.NETS.items():
        params = inspect.signature(nets.NETS[name]).parameters
        built = {p: v.default for p, v in params.items() if p not in ("self", "input_shape", "num_classes")}
        assert built == {**{h.name: h.default for h in spec.options}, "dropout": 0.0}, name


def test_every_declared_toy_function_is_implemented_with_its_description():
    from lit_opt import toy

    assert {n: f.description for n, f in toy.FUNCTIONS.items()} == declarations.TOY_FUNCTIONS


def test_scheduler_options_are_checked_against_their_declaration():
    from lit_opt.errors import ConfigError
    from lit_opt.schedulers import validate_scheduler

    for name, fields in declarations.SCHEDULER_OPTIONS.items():
        assert validate_scheduler(name, {}) == {h.name: h.default for h in fields}
    with pytest.raises(ConfigError, match="model.scheduler_args.gamma must be a number in \\(0, 1\\]"):
        validate_scheduler("step", {"gamma": 2})


class FakeSVHN:
    """A dataset class with torchvision's SVHN interface: `split=` instead of `train=`, images
    stored (N, C, H, W), labels in `.labels`. Its files are .npz arrays this test writes."""

    def __init__(self, root, split="train", download=False):
        import numpy as np

        blob = np.load(Path(root) / f"fake_{split}.npz")
        self.data, self.labels = blob["x"], blob["y"]


def test_a_dataset_declared_in_one_place_trains_through_the_cli(tmp_path, monkeypatch):
    import json

    import numpy as np

    from lit_opt.cli import main
    from lit_opt.declarations.datasets import DATASETS, DatasetSpec, register

    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("test", 60)):
        y = rng.integers(0, 4, n)
        x = rng.integers(0, 60, (n, 3, 16, 16)).astype(np.uint8)
        x[np.arange(n), y % 3] += 150  # the class shows as a bright channel (and class 3 as channel 0)
        np.savez(tmp_path / f"fake_{split}.npz", x=x, y=y)
    monkeypatch.setitem(DATASETS, "fake_svhn", None)  # restored after the test
    register(DatasetSpec("fake_svhn", (3, 16, 16), ("a", "b", "c", "d"), (0.5, 0.5, 0.5), (0.3, 0.3, 0.3), False,
                         FakeSVHN, ("fake_train.npz", "fake_test.npz"), "a test's fake SVHN", split_arg="split"))
    runs = tmp_path / "runs"
    assert main(["fit", "--data.name", "fake_svhn", "--data.data_dir", str(tmp_path), "--data.val_size", "50",
                 "--data.batch_size", "25", "--model.net", "lenet5", "--model.optimizer", "adam",
                 "--trainer.max_epochs", "2", "--run.root", str(runs), "--run.name", "fake",
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]) == 0
    summary = json.loads((runs / "fake" / "summary.json").read_text())
    assert summary["test/acc"] is not None
    counts = (runs / "fake" / "confusion_test.csv").read_text().splitlines()
    assert counts[0].split(",")[1:5] == ["a", "b", "c", "d"]  # the declared class names
    assert sum(sum(map(int, row.split(",")[1:5])) for row in counts[1:]) == 60  # every test image once
