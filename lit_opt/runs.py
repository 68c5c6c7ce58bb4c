"""Run folders: one per training run, never overwriting another.

    checkpoints/<run name>/
        config.yaml          the resolved config (`fit --config` repeats the run, steering included)
        metrics.csv          every logged value (lit_opt/metrics_logger.py)
        steps.csv            one row per training batch: the live stream's step series
        epochs.csv           one row per epoch: losses, accuracies, epoch time, lr
        best.ckpt            the best validation accuracy so far
        last.ckpt            the latest state (epoch end, Stop/Ctrl-C, or before a divergence)
        confusion_val.csv/png, confusion_test.csv/png, weights.png

`run_callbacks` and `run_logger` give the CLI and the desktop app the same folder layout.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_opt.callbacks import DivergenceGuard, EpochSummary, RunFiles, StopOnRequest
from lit_opt.errors import ConfigError, StorageError

DEFAULT_ROOT = "checkpoints"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


def default_run_name(dataset: str, net: str, optimizer: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{dataset}-{net}-{optimizer}-{stamp}"


def new_run_dir(root: str | os.PathLike, name: Optional[str], default_name: str) -> Path:
    """Create a fresh run folder. A chosen name that exists is an error; a default name gets a suffix."""
    root = Path(root)
    if name is not None and not _NAME_OK.match(name):
        raise ConfigError(f"run name {name!r} may hold only letters, digits and . _ + = - "
                          f"(and must start with a letter or digit)")
    root.mkdir(parents=True, exist_ok=True)
    if name is not None:
        path = root / name
        try:
            path.mkdir()
        except FileExistsError:
            raise ConfigError(f"run folder {path} exists already; choose another --run.name, or resume "
                              f"that run with --ckpt_path {path / 'last.ckpt'}") from None
        return path
    for k in range(1, 1000):
        path = root / (default_name if k == 1 else f"{default_name}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"could not find a free run folder name in {root}")


RUN_DIR_ENV = "LIT_OPT_RUN_DIR"


def process_rank() -> int:
    """This process's global rank as the launcher set it (0 when not distributed)."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def _job_id() -> Optional[str]:
    """The id of a job whose processes were all started together by torchrun or SLURM."""
    if os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none":  # torchrun says "none" without --rdzv-id
        return os.environ["TORCHELASTIC_RUN_ID"]
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return os.environ["SLURM_JOB_ID"]
    return None


def shared_run_dir(root: str | os.PathLike, name: Optional[str], default_name: str) -> Path:
    """The run folder every process of a (possibly distributed) run agrees on.

    One process, or rank 0 of Lightning's own DDP launcher: a fresh folder, recorded in
    $LIT_OPT_RUN_DIR, which the processes the launcher starts later inherit and reuse.
    Processes started together by torchrun or SLURM cannot wait for each other: they
    all use --run.name, or a name made from the job id.
    """
    job = _job_id()
    if job is None:
        if process_rank() > 0 and os.environ.get(RUN_DIR_ENV):
            return Path(os.environ[RUN_DIR_ENV])
        path = new_run_dir(root, name, default_name)
        os.environ[RUN_DIR_ENV] = str(path.resolve())
        return path
    path = Path(root) / (name or f"{default_name.rsplit('-', 2)[0]}-job{job}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir_of_checkpoint(ckpt_path: str | os.PathLike) -> Optional[Path]:
    """The run folder a checkpoint sits in, if it sits in one (it holds a config.yaml)."""
    folder = Path(ckpt_path).resolve().parent
    return folder if (folder / "config.yaml").exists() else None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file, then rename it over the old one: a crash
    or a full disk mid-write leaves the previous checkpoint intact, never a truncated file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(f"{TMP_PREFIX}{path.name}.tmp{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb+") as f:  # on disk before the rename, so a power cut cannot empty it
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
            if isinstance(exc, RuntimeError) and "write" not in str(exc):
                raise
            raise StorageError(StorageError.describe(exc, path)) from exc
        finally:
            if tmp.exists():
                tmp.unlink()


# A checkpoint being written is `.NAME.tmpPID` beside NAME: hidden, and never read. A kill
# between write and rename leaves one behind; the next process that holds the run's lock
# removes them (no other process can be writing there then).
TMP_PREFIX = "."
_STALE_TMP = re.compile(r"^\..+\.tmp\d+$")
LOCK_FILE = ".lock"
_held_locks: dict[Path, Any] = {}  # run folder -> open lock file, for release_run_locks


def lock_run_dir(run_dir: Path) -> None:
    """Hold the run folder for this process, so no second process trains into it at once.

    An advisory `flock` on RUN/.lock: the kernel releases it when the process ends, however
    it ends (SIGKILL included), so a lock is never left stale. Only the process that writes
    the run folder locks it (rank 0 under DDP). Also removes checkpoint temp files that a
    killed process left behind. Raises ConfigError naming the holder when it is taken.
    """
    import fcntl

    run_dir = Path(run_dir).resolve()
    if run_dir in _held_locks or process_rank() > 0:
        return
    f = open(run_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ConfigError(f"{run_dir} is in use by {holder}, which is training in it now; wait for it "
                          f"to finish or stop it, then resume with --ckpt_path {run_dir / 'last.ckpt'}") from None
    f.seek(0)
    f.truncate()
    f.write(f"lit_opt process {os.getpid()}\n")
    f.flush()
    _held_locks[run_dir] = f
    for stale in run_dir.iterdir():
        if _STALE_TMP.match(stale.name):
            stale.unlink(missing_ok=True)


# What a fresh run folder holds before its first training step: nothing a person made. The
# TensorBoard logger's folder then holds its hyperparameters and an event file with no step
# in it; init.pt is the net as it was built.
_BEFORE_TRAINING = {LOCK_FILE, "config.yaml", "hparams.yaml", "init.pt"}
_BOARD = "tensorboard"


def _untrained_board(path: Path) -> bool:
    return path.name == _BOARD and path.is_dir() and all(
        p.is_file() and (p.name == "hparams.yaml" or p.name.startswith("events.out.tfevents."))
        for p in path.iterdir())


def remove_if_unused(run_dir: Path) -> None:
    """Remove a fresh run folder that a run refused before training left behind: only its lock
    file, the config files and initial weights written at setup and an empty TensorBoard log,
    never a checkpoint or a log of a step. Callers pass only folders this process created for
    this run (never a resumed one)."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and all((p.name in _BEFORE_TRAINING and p.is_file()) or _untrained_board(p)
                                for p in run_dir.iterdir()):
        release_run_locks(run_dir)
        for name in _BEFORE_TRAINING:
            (run_dir / name).unlink(missing_ok=True)
        board = run_dir / _BOARD
        if board.is_dir():
            for p in board.iterdir():
                p.unlink()
            board.rmdir()
        run_dir.rmdir()


TRASH = ".trash"  # inside a runs folder: where moved-away runs wait (not listed as runs)


def trash_run(run_dir: Path) -> Path:
    """Move a run folder into `.trash` beside it (RUNS/.trash/NAME, NAME-2, ... if taken) and
    return where it went: nothing is deleted, and moving it back restores it. Refused with
    ConfigError while any process, this one included, trains in it."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a folder; nothing was moved")
    if run_dir in _held_locks:
        raise ConfigError(f"{run_dir} is training in this program now; stop the run first")
    had_lock_file = (run_dir / LOCK_FILE).exists()
    lock_run_dir(run_dir)  # raises, naming the holder, while another process trains in it
    release_run_locks(run_dir)
    if not had_lock_file:  # leave the folder as it was
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
    trash = run_dir.parent / TRASH
    trash.mkdir(exist_ok=True)
    target, n = trash / run_dir.name, 2
    while target.exists():
        target, n = trash / f"{run_dir.name}-{n}", n + 1
    run_dir.rename(target)  # same file system: one atomic rename, never a copy and delete
    return target


def held_run_dirs() -> set[Path]:
    """The run folders this process holds now."""
    return set(_held_locks)


def release_run_locks(run_dir: Optional[Path] = None, new_since: Optional[set[Path]] = None) -> None:
    """Release this process's hold on `run_dir`, or on every run folder it took since the
    `held_run_dirs()` snapshot `new_since` (never another job's)."""
    if run_dir is not None:
        paths = [Path(run_dir).resolve()]
    else:
        paths = [p for p in list(_held_locks) if new_since is None or p not in new_since]
    for path in paths:
        f = _held_locks.pop(path, None)
        if f is not None:
            f.close()  # closing the file releases the flock


def run_callbacks(run_dir: Path, listeners: tuple = (), steering: Optional[list] = None,
                  diagnostics: Optional[dict] = None, loggers: tuple = (), validation: bool = True) -> list[Callback]:
    """Checkpointing, divergence guard, stop-on-request, epoch summary, run files, steering
    (`steering`: the config's `run.steering` changes, lit_opt/steering.py), and the live stream
    (lit_opt/stream.py; its sources configured by the `diagnostics` options) to the run
    folder's own files, to TensorBoard (when `loggers` has run_logger's), and to `listeners`.
    Without `validation` (data.val_size 0) there is no best.ckpt, only last.ckpt."""
    from lit_opt.diagnostics import default_sources
    from lit_opt.initial_weights import InitialWeights
    from lit_opt.steering import Steering
    from lit_opt.stream import LiveStream
    from lit_opt.stream_files import RunFolderWriter

    summary = EpochSummary()
    from lit_opt.tensorboard_files import TensorBoardWriter

    board = [TensorBoardWriter(lg) for lg in loggers if isinstance(lg, TensorBoardLogger)]
    listeners = (RunFolderWriter(run_dir), *board, *listeners)
    return [
        summary,
        # Before the stream: a change pinned as a batch starts is in that batch's learning rate.
        Steering(steering, listeners=listeners),
        # A program watching live (the app) gets rows 20 times a second; the files alone, once
        # a second: each flush costs a fixed half millisecond or so (docs/performance.md).
        LiveStream(default_sources(diagnostics), list(listeners), summary=summary, run_dir=run_dir,
                   flush_seconds=0.05 if len(listeners) > 1 + len(board) else 1.0),
        RunFiles(run_dir),
        InitialWeights(run_dir),  # init.pt: the line from the initial weights (lit_opt/landscape.py)
        DivergenceGuard(),
        StopOnRequest(),
        *([ModelCheckpoint(dirpath=run_dir, filename="best", monitor="val/acc", mode="max", save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)] if validation else []),
        # Unmonitored, so it refreshes every epoch (a monitored one only refreshes last.ckpt
        # when the monitored value improves).
        ModelCheckpoint(dirpath=run_dir, filename="last", monitor=None, save_top_k=1,
                        enable_version_counter=False),
    ]


def run_logger(run_dir: Path, resumed_at: Optional[int] = None) -> list[Logger]:
    """metrics.csv, and TensorBoard's event files in RUN/tensorboard/ (`tensorboard --logdir
    checkpoints` shows every run, with its model graph). A run resumed from a checkpoint taken
    after `resumed_at` batches purges the events logged after it (TensorBoard's purge_step: the
    reader drops earlier files' events from that step on), as metrics.csv and steps.csv are
    trimmed, so no step is shown twice."""
    from lit_opt.metrics_logger import MetricsCSV
    from lit_opt.tensorboard_files import GraphSafeTensorBoard

    purge = {"purge_step": int(resumed_at)} if resumed_at else {}
    return [MetricsCSV(run_dir), GraphSafeTensorBoard(save_dir=str(run_dir), name="tensorboard", version="",
                                                      default_hp_metric=False, **purge)]


def stop_callback(trainer) -> Optional[StopOnRequest]:
    for cb in trainer.callbacks:
        if isinstance(cb, StopOnRequest):
            return cb
    return None
