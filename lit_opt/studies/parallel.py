"""A study's trials N at a time (`sweep`/`compare --jobs N`), each in its own process.

Each trial is exactly the `python -m lit_opt fit ...` line `--print-commands` prints (with
`--ckpt_path` added for an interrupted trial), so a trial run here, one run by a scheduler
and one run in the study's own process are the same run. A child keeps torch's own thread
count, the one a trial run alone gets, so the results are identical to running the trials
one by one (tests/test_studies.py compares the weights); with CUDA, the children take the
devices in turn. Each child writes its output to STUDY/logs/TRIAL.log.

Ctrl-C and SIGTERM reach this process only (children run in their own sessions) and are
passed on once to every running trial, which stops after its current batch with a
resumable last.ckpt; the study then exits 130 or 143, as a sequential one does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

from lit_opt.errors import (
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    EXIT_IO_ERROR,
    EXIT_OK,
    EXIT_TERMINATED,
    ConfigError,
    StorageError,
    Terminated,
)
from lit_opt.run_files import SUMMARY, read_json

POLL_SECONDS = 0.2


def run_parallel(study, trials: list[tuple], jobs: int, log: Callable = print) -> int:
    """Run `trials` ([(trial, args, ckpt_path)], the ones not finished yet) at most `jobs` at a
    time. Returns 0, or 1 if a trial failed unexpectedly; raises KeyboardInterrupt or
    runner.Terminated when stopped, ConfigError for a refused trial, StorageError for a full
    disk: the same outcomes as the sequential runner."""
    logs = study.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    devices = _cuda_devices()
    pending, running = list(trials), {}
    code, stop_signal, refused = EXIT_OK, None, None
    try:
        while pending or running:
            while pending and len(running) < jobs and stop_signal is None and refused is None:
                trial, args, ckpt = pending.pop(0)
                env = dict(os.environ)
                # Children that share the cores must not spin while they wait (GNU OpenMP's
                # default): measured on 2 cores, two spinning trials took 91 s each against 10-17 s
                # passive (docs/performance.md). How threads wait changes no result.
                env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                device = least_busy(devices, [d for *_, d in running.values()]) if devices else None
                if device is not None:
                    env["CUDA_VISIBLE_DEVICES"] = device
                argv = [sys.executable, "-m", "lit_opt", "fit", *args, *(["--ckpt_path", ckpt] if ckpt else [])]
                out = open(logs / f"{trial.name}.log", "a")
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
                running[proc] = (trial, out, time.perf_counter(), device)
                log(f"{trial.name}: started (log: {logs / f'{trial.name}.log'})")
            time.sleep(POLL_SECONDS)
            for proc in [p for p in running if p.poll() is not None]:
                trial, out, t0, _ = running.pop(proc)
                out.close()
                outcome = _outcome(study, trial, proc.returncode, time.perf_counter() - t0, log)
                if outcome == "failed":
                    code = 1
                elif outcome in ("refused", "storage"):
                    refused = refused or (outcome, trial)
                    _pass_on(running, signal.SIGINT)  # the others stop with a last.ckpt, as on Ctrl-C
                elif outcome in ("interrupted", "terminated") and stop_signal is None:
                    stop_signal = signal.SIGINT if outcome == "interrupted" else signal.SIGTERM
    except (KeyboardInterrupt, Terminated) as exc:
        stop_signal = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        _pass_on(running, stop_signal)
        for proc, (trial, out, t0, _) in running.items():
            proc.wait()
            out.close()
        running.clear()
    if refused is not None:
        kind, trial = refused
        if kind == "storage":
            raise StorageError(f"trial {trial.name} could not write its files; see {logs / trial.name}.log")
        raise ConfigError(f"trial {trial.name} was refused; see {logs / trial.name}.log. Its command:\n"
                          f"  {trial.command()}")
    if stop_signal == signal.SIGTERM:
        raise Terminated
    if stop_signal == signal.SIGINT:
        raise KeyboardInterrupt
    return code


def _outcome(study, trial, returncode: int, seconds: float, log: Callable) -> str:
    """What a trial's exit code says, logged as the sequential runner logs it."""
    run_dir = study.out / trial.name
    if returncode == EXIT_OK:
        summary = read_json(run_dir / SUMMARY) or {}
        log(f"{trial.name}: finished in {seconds:.0f} s, test/acc {summary.get('test/acc')}")
        return "finished"
    if returncode == EXIT_DIVERGED and (run_dir / "diverged.json").exists():
        info = read_json(run_dir / "diverged.json") or {}
        log(f"{trial.name}: diverged in epoch {int(info.get('epoch') or 0) + 1}, step {info.get('step')}; going on")
        return "diverged"
    outcomes = {EXIT_BAD_INPUT: "refused", EXIT_IO_ERROR: "storage", EXIT_INTERRUPTED: "interrupted",
                EXIT_TERMINATED: "terminated", -signal.SIGINT: "interrupted", -signal.SIGTERM: "terminated"}
    if returncode in outcomes:
        return outcomes[returncode]
    print(f"error: trial {trial.name} failed (exit code {returncode}); the study goes on (run it again to "
          f"retry); see {study.out / 'logs' / trial.name}.log", file=sys.stderr)
    return "failed"


def _pass_on(running: dict, sig: int) -> None:
    for proc in running:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass


def least_busy(devices: list[str], in_use: list[str]) -> str:
    """The device running the fewest trials (the first of them): a finished trial's device
    goes to the next trial, never a second trial onto a busy one while another is free."""
    return min(devices, key=in_use.count)


def _cuda_devices() -> Optional[list[str]]:
    """The CUDA devices to hand out in turn, or None (CPU: every child keeps torch's threads)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    import torch

    n = torch.cuda.device_count()
    if n == 0:
        return None
    ids = [d for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(n)]
    return ids[:n] or None
