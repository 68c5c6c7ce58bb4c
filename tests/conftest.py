"""Shared fixtures: the real-data folder, a private cache folder, small datasets on disk."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

# Under pytest-xdist (`-n 2`, the README's command: a worker per core) each worker computes
# on one thread, its OpenMP threads waiting passively: two workers of two spinning threads on
# two cores slowed every test several-fold. Set before torch loads; subprocesses inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Import Lightning before any test captures stderr: its log handlers bind to the stderr
# they see first, and one bound to a test's capture stream breaks once that closes.
import lightning  # noqa: E402,F401

# Qt must know it has no screen before any QApplication exists (the GUI tests).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Derived files (decoded image folders, unpacked archives) go to a cache of the test session."""
    old = os.environ.get("LIT_OPT_CACHE")
    os.environ["LIT_OPT_CACHE"] = str(tmp_path_factory.mktemp("lit_opt_cache"))
    yield
    if old is None:
        os.environ.pop("LIT_OPT_CACHE", None)
    else:
        os.environ["LIT_OPT_CACHE"] = old


@pytest.fixture(autouse=True)
def _quiet_lightning():
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real datasets (MNIST, Fashion-MNIST, CIFAR-10 JPEGs) named by LIT_OPT_DATA."""
    path = os.environ.get("LIT_OPT_DATA")
    if not path:
        pytest.skip("LIT_OPT_DATA is not set: real-data tests need the datasets folder "
                    "(.ci/run sets it to ../shared/datasets)")
    if not Path(path).is_dir():
        pytest.skip(f"LIT_OPT_DATA={path} is not a folder")
    return Path(path)


def quiet_trainer(**kwargs):
    """A small CPU Trainer that writes nothing and prints little."""
    import lightning as L

    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    defaults.update(kwargs)
    return L.Trainer(**defaults)
