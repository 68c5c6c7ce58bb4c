"""Real 2-process DDP runs (gloo on CPU) through `python -m lit_opt`: sharded batches,
exact metrics, exact full-batch gradient descent, SAM with the global gradient, one run folder.

DDP relaunches `sys.argv`, so each run is a subprocess, never pytest's own process.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import images_for, write_idx

ROOT = Path(__file__).resolve().parents[1]
N_VAL, N_TEST = 101, 30

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """MNIST-format files: 501 training images (401 train + 101 validation: both odd, so the
    shards are uneven) and 30 test images."""
    import numpy as np

    root = tmp_path_factory.mktemp("ddp_data")
    rng = np.random.default_rng(0)
    write_idx(root / "MNIST" / "raw", "train", images_for(502, (28, 28), 1), rng.integers(0, 10, 502))
    write_idx(root / "MNIST" / "raw", "t10k", images_for(N_TEST, (28, 28), 2), rng.integers(0, 10, N_TEST))
    return root


def lit_opt(*args: str, cwd: Path, devices: int = 2, code: int = 0):
    """Run `python -m lit_opt ARGS`: in a subprocess for DDP, in this process otherwise."""
    if devices == 1:
        from lit_opt.cli import main

        assert main(list(args)) == code
        return None
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # A fresh launch: nothing of an earlier run in this process (an in-process Trainer may
    # have set MASTER_PORT, whose socket the last launch still holds) may leak into it.
    for key in ("LIT_OPT_RUN_DIR", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK",
                "NODE_RANK", "GROUP_RANK", "PL_GLOBAL_SEED"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-m", "lit_opt", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == code, out.stderr[-3000:]
    return out


def common(data: Path, runs: Path, devices: int, *extra: str) -> list[str]:
    ddp = ["--trainer.strategy", "ddp"] if devices > 1 else []
    return ["--data.data_dir", str(data), "--data.val_size", str(N_VAL), "--run.root", str(runs),
            "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), *ddp,
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--model.net", "mlp", "--model.net_args", "{hidden: [16]}", *extra]


def callbacks(*specs: tuple[str, dict]) -> list[str]:
    return ["--trainer.callbacks", json.dumps([{"class_path": f"tests.helpers.{c}", "init_args": a}
                                               for c, a in specs])]


def weights(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def ddp_run(data, tmp_path_factory):
    """Two epochs of momentum SGD on 2 processes, each recording the indices it trained on."""
    tmp = tmp_path_factory.mktemp("ddp_run")
    runs, seen = tmp / "runs", tmp / "seen"
    lit_opt("fit", *common(data, runs, 2, "--model.optimizer", "momentum", "--data.batch_size", "50",
                           "--trainer.max_epochs", "2", "--run.test", "false"),
            *callbacks(("RecordIndices", {"out_dir": str(seen)})), cwd=tmp)
    return tmp, runs, seen


def test_two_processes_train_on_disjoint_halves_and_write_one_run_folder(ddp_run):
    _, runs, seen = ddp_run
    assert len(list(runs.iterdir())) == 1
    ranks = [json.loads((seen / f"rank{r}.json").read_text()) for r in (0, 1)]
    for epoch in ("0", "1"):
        a, b = set(ranks[0][epoch]), set(ranks[1][epoch])
        assert len(a) == len(ranks[0][epoch]) and len(b) == len(ranks[1][epoch])  # no repeats
        assert not a & b
        assert a | b == set(range(401))
    assert ranks[0]["0"] != ranks[0]["1"]  # a new permutation each epoch


def test_validation_on_two_processes_equals_one_process(data, ddp_run):
    tmp, runs, _ = ddp_run
    ckpt = next(runs.iterdir()) / "best.ckpt"
    results = []
    for devices in (1, 2):
        out = tmp / f"val{devices}.json"
        # The run's config.yaml names the test's callbacks, so it is used only when named.
        lit_opt("validate", "--config", str(ckpt.parent / "config.yaml"), *common(data, runs, devices),
                "--ckpt_path", str(ckpt), *callbacks(("DumpMetrics", {"path": str(out)})), cwd=tmp,
                devices=devices)
        results.append(json.loads(out.read_text()))
    one, two = results
    assert two["val/acc"] == one["val/acc"]
    assert two["val/loss"] == pytest.approx(one["val/loss"], abs=1e-6)


def test_full_batch_gd_is_exact_on_two_processes(data, tmp_path):
    finals, epochs = [], []
    for devices in (1, 2):
        runs = tmp_path / f"runs{devices}"
        lit_opt("fit", *common(data, runs, devices, "--model.optimizer", "gd", "--model.lr", "0.5",
                               "--model.l2", "0.001", "--data.batch_size", "64", "--trainer.max_epochs", "1",
                               "--run.test", "false"), cwd=tmp_path, devices=devices)
        run = next(runs.iterdir())
        finals.append(weights(run / "last.ckpt"))
        with (run / "epochs.csv").open() as f:
            epochs.append(next(csv.DictReader(f)))
    for key in finals[0]:
        torch.testing.assert_close(finals[0][key], finals[1][key], atol=1e-6, rtol=0)
    # gd's weights are fixed within the epoch, so the epoch's training loss and accuracy over
    # the whole set do not depend on how it was split: each process's sums, reduced.
    one, two = epochs
    assert float(two["train/acc"]) == pytest.approx(float(one["train/acc"]), abs=1e-6)
    assert float(two["train/loss"]) == pytest.approx(float(one["train/loss"]), rel=1e-5)


def test_sam_perturbs_with_the_global_gradient(data, tmp_path):
    """docs/scaling.md: under DDP, SAM's gradient (and its norm) is the all-reduced one, so 2
    processes with batch b take the same steps as 1 process with batch 2b (no m-sharpness)."""
    finals = []
    for devices, batch in ((1, 50), (2, 25)):
        runs = tmp_path / f"runs{devices}"
        lit_opt("fit", *common(data, runs, devices, "--model.optimizer", "sam", "--model.lr", "0.1",
                               "--model.optimizer_args", "{base: sgd, momentum: 0.0, rho: 0.5}",
                               "--data.batch_size", str(batch), "--data.train_size", "400",
                               "--trainer.max_epochs", "1", "--run.test", "false"), cwd=tmp_path,
                devices=devices)
        finals.append(weights(next(runs.iterdir()) / "last.ckpt"))
    for key in finals[0]:
        torch.testing.assert_close(finals[0][key], finals[1][key], atol=1e-5, rtol=0)


def test_stop_on_two_processes_ends_cleanly_with_a_resumable_checkpoint(data, tmp_path):
    """A stop seen by one process must stop both at the same batch (they agree each step),
    with the clean message and exit code 130, and a last.ckpt that resumes on 2 processes."""
    runs = tmp_path / "runs"
    args = common(data, runs, 2, "--model.optimizer", "momentum", "--data.batch_size", "50",
                  "--trainer.max_epochs", "2", "--run.test", "false")
    out = lit_opt("fit", *args, *callbacks(("StopAtStep", {"step": 5, "rank": 1})), cwd=tmp_path, code=130)
    assert "Stopped in epoch 1, step 5" in out.stderr and "Traceback" not in out.stderr
    run = next(runs.iterdir())
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 5
    lit_opt("fit", "--config", str(run / "config.yaml"), *common(data, runs, 2), "--ckpt_path",
            str(run / "last.ckpt"), cwd=tmp_path)
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 2 * 5  # 2 epochs of 5 steps
    assert len(list(runs.iterdir())) == 1
