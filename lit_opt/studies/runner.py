r"""`python -m lit_opt sweep` and `python -m lit_opt compare`: run a study's trials, then report.

    python -m lit_opt sweep --param model.l2 'logspace(-5,-1,10)' --out checkpoints/studies/l2 \
        --config configs/seed003_best_mlp.yaml --trainer.max_epochs 5 --seeds 2
    python -m lit_opt sweep --param model.lr 'logspace(-3,0,4)' --param data.batch_size 32,128 --out checkpoints/studies/lr
    python -m lit_opt compare --optimizers sgd:0.01,0.1 momentum:0.01 adam:1e-4,1e-3 \
        --datasets mnist fashion_mnist --seeds 3 --out checkpoints/studies/opt --trainer.max_epochs 3
    python -m lit_opt sweep --study configs/studies/seed003_l2.yaml [--print-commands]

Options the study does not know are `fit` options, given to every trial. Each trial runs
in this process through the job API (lit_opt/jobs.py), the same run as `python -m lit_opt
fit ... --run.root STUDY --run.name TRIAL`; its failures arrive as typed exceptions. With
`--jobs N`, N trials run at a time as such processes (lit_opt/studies/parallel.py). A
trial's folder says how far it got:

- summary.json: finished, skipped when the study runs again (its files are not touched);
- diverged.json (written by the run): the loss became NaN/inf at the step it names;
  reported as diverged, and the study goes on;
- neither: interrupted. With a last.ckpt it resumes from there (`fit --ckpt_path`); without
  one it is moved aside to STUDY/interrupted/ and started again. Nothing is deleted.

`--print-commands` writes STUDY/study.json and prints one `python -m lit_opt fit ...` line
per trial (for a cluster scheduler, or one process per GPU); `python -m lit_opt report
STUDY` then reports whatever has finished. Exit codes: 0 every trial finished or diverged;
1 a trial failed unexpectedly; 2 bad input; 74 a file could not be written (disk full);
130 stopped by Ctrl-C, 143 by SIGTERM (run again to resume).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence

from lit_opt.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_IO_ERROR,
    EXIT_TERMINATED,
    ConfigError,
    DivergenceError,
    LitOptError,
    RunStopped,
    StorageError,
    Terminated,
)
from lit_opt.studies import spec as specs
from lit_opt.studies.results import DIVERGED_FILE, trial_state

STUDY_FILE = "study.json"


# --- command lines -----------------------------------------------------------------------


def _parser(kind: str) -> argparse.ArgumentParser:
    doc = sys.modules[__name__].__doc__
    p = argparse.ArgumentParser(
        prog=f"python -m lit_opt {kind}", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("Run a hyperparameter sweep: each trial is a fit of the base config with one or two "
                     "keys changed." if kind == "sweep" else
                     "Compare optimizers (each with one learning rate or a small grid, the best chosen on "
                     "validation accuracy) on one or more datasets, over seeds."),
        epilog="Any other option is a fit option given to every trial (--config FILE, --trainer.max_epochs 3, "
               "--data.train_size 10000, ...).\n\n" + doc.split("\n\n", 1)[1])
    p.add_argument("--study", metavar="FILE", help="a study file (YAML; configs/studies/ holds the seed studies); "
                                                   "options given here add to it or replace its values")
    if kind == "sweep":
        p.add_argument("--param", nargs=2, action="append", metavar=("KEY", "VALUES"), default=[],
                       help="a dotted config key and its values: 'logspace(-5,-1,10)', 'linspace(0,0.5,3)', "
                            "'[10, 50]', 0,0.25,0.5 (twice for a 2-D sweep)")
    else:
        p.add_argument("--optimizers", nargs="+", metavar="NAME[:LRS]",
                       help="registry names, each with its lr or lr grid: sgd:0.1 adam:1e-4,1e-3 "
                            "rmsprop:'logspace(-4,-2,3)'")
        p.add_argument("--datasets", nargs="+", metavar="NAME", help="dataset names (data.name), e.g. mnist fashion_mnist")
    p.add_argument("--seeds", help="N (seeds 0..N-1, default 1) or a comma list like 0,3,7")
    p.add_argument("--out", metavar="DIR", help="the study folder (default: checkpoints/studies/<study file name>)")
    p.add_argument("--target", type=float, metavar="ACC",
                   help="validation accuracy for the 'epochs/seconds to target' columns "
                        "(default: 95%% of the best group's best validation accuracy)")
    p.add_argument("--print-commands", action="store_true",
                   help="print one `python -m lit_opt fit ...` line per trial and run nothing")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run N trials at a time, each in its own process (the same results as one by "
                        "one: each keeps torch's thread count; with CUDA, one device each in turn); "
                        "default 1, in this process")
    return p


def _spec_from_args(kind: str, args, p) -> tuple[dict, Optional[Path]]:
    spec, base_dir = ({}, None)
    if args.study:
        spec, base_dir = specs.read_study_file(args.study)
        if spec.get("kind", kind) != kind:
            raise ConfigError(f"{args.study} is a {spec['kind']} study: run it with `python -m lit_opt "
                              f"{spec['kind']} --study {args.study}`")
    if kind == "sweep":
        sweep = dict(spec.get("sweep") or {})
        for key, values in args.param:
            sweep[key] = values
        spec["sweep"] = sweep
    else:
        if args.optimizers:
            spec["optimizers"] = {}
            for item in args.optimizers:
                name, _, lrs = item.partition(":")
                spec["optimizers"][name] = {"lr": lrs} if lrs else {}
        if args.datasets:
            spec["datasets"] = list(args.datasets)
    if args.seeds is not None:
        spec["seeds"] = args.seeds
    if args.target is not None:
        spec["target"] = args.target
    if not args.out and not spec.get("out"):
        p.error("give the study folder with --out DIR (or a --study file)")
    return spec, base_dir


def build(kind: str, argv: Sequence[str]) -> tuple[specs.Study, bool]:
    """The study a command line describes, and whether it only prints the commands."""
    p = _parser(kind)
    args, fit_args = p.parse_known_args(list(argv))
    specs.check_fit_args(fit_args, kind)
    spec, base_dir = _spec_from_args(kind, args, p)
    source = f"python -m lit_opt {kind} " + shlex.join(list(argv))
    make = specs.sweep_study if kind == "sweep" else specs.compare_study
    return make(spec, out=args.out, base_dir=base_dir, fit_args=fit_args, source=source), args.print_commands


def sweep_main(argv: Optional[Sequence[str]] = None) -> int:
    return _main("sweep", sys.argv[1:] if argv is None else argv)


def compare_main(argv: Optional[Sequence[str]] = None) -> int:
    return _main("compare", sys.argv[1:] if argv is None else argv)


def _main(kind: str, argv: Sequence[str]) -> int:
    try:
        study, print_only = build(kind, argv)
        save_study(study)
    except LitOptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if print_only:
        for trial in study.trials:
            print(trial.command())
        print(f"# {len(study.trials)} trials; afterwards: python -m lit_opt report {study.out}", file=sys.stderr)
        return 0
    jobs = _parser(kind).parse_known_args(list(argv))[0].jobs
    if jobs < 1:
        print(f"error: --jobs must be >= 1, got {jobs}", file=sys.stderr)
        return 2
    return run_study(study, jobs=jobs)


# --- the study folder --------------------------------------------------------------------


def save_study(study: specs.Study) -> Path:
    """Write STUDY/study.json, keeping the trials of earlier runs of the study. A trial name
    that comes back with other settings is refused: its folder holds the other settings' run."""
    study.out.mkdir(parents=True, exist_ok=True)
    path = study.out / STUDY_FILE
    data = study.to_json()
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("kind") != study.kind:
            raise ConfigError(f"{study.out} holds a {old.get('kind')} study; choose another --out")
        mine = {t["name"]: t for t in data["trials"]}
        for trial in old.get("trials", []):
            new = mine.get(trial["name"])
            if new is not None and new["args"] != trial["args"]:
                raise ConfigError(
                    f"{study.out} already holds trial {trial['name']} made with other settings:\n"
                    f"  before: {trial['command']}\n  now:    {new['command']}\n"
                    f"choose another --out, or run the study as it was")
        data["trials"] = [*[t for t in old.get("trials", []) if t["name"] not in mine], *data["trials"]]
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def prepare_trial(study: specs.Study, trial: specs.Trial, log=print) -> Optional[tuple[list[str], Optional[str]]]:
    """(fit options, checkpoint to resume or None) for a trial still to run; None if its folder
    says it finished or diverged before (its files are not touched). A trial interrupted
    before any checkpoint has its folder moved aside to STUDY/interrupted/ and starts again."""
    run_dir = study.out / trial.name
    state = trial_state(run_dir)
    if state in ("finished", "diverged"):
        log(f"{trial.name}: {state} before, skipped")
        return None
    args, ckpt = trial.args, None
    if state == "interrupted":
        last = run_dir / "last.ckpt"
        if last.is_file() and (run_dir / "config.yaml").is_file():
            log(f"{trial.name}: interrupted before; resuming from {last}")
            ckpt = str(last)  # with the trial's own settings, which the study holds
        else:
            aside = study.out / "interrupted" / f"{trial.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
            aside.parent.mkdir(exist_ok=True)
            run_dir.rename(aside)
            log(f"{trial.name}: interrupted before any checkpoint; its folder is moved to {aside}, starting again")
    return args, ckpt


def run_trial(study: specs.Study, trial: specs.Trial, log=print) -> str:
    """Run (or resume, or skip) one trial in this process; returns its state afterwards
    (results.trial_state)."""
    prepared = prepare_trial(study, trial, log)
    if prepared is None:
        return trial_state(study.out / trial.name)
    args, ckpt = prepared
    run_dir = study.out / trial.name
    from lightning.fabric.utilities.exceptions import MisconfigurationException  # Lightning's refusal

    t0 = time.perf_counter()
    try:
        summary = _fit(args, ckpt)
    except DivergenceError as exc:  # the run's own callback wrote diverged.json beside its files
        info = json.loads((run_dir / DIVERGED_FILE).read_text()) if (run_dir / DIVERGED_FILE).exists() else {}
        print(f"error: {exc}", file=sys.stderr)
        log(f"{trial.name}: diverged at epoch {info.get('epoch')}, step {info.get('step')}; going on")
        return "diverged"
    except RunStopped as exc:
        print(f"\n{exc}", file=sys.stderr)
        if exc.signum == signal.SIGTERM:
            raise Terminated from None
        raise KeyboardInterrupt from None
    except StorageError:
        raise
    except OSError as exc:  # writing the run's files: a full disk ends the study (exit 74)
        raise StorageError(StorageError.describe(exc)) from exc
    except (LitOptError, MisconfigurationException) as exc:
        raise ConfigError(f"trial {trial.name} was refused: {exc}\nIts command:\n  {trial.command()}") from None
    log(f"{trial.name}: finished in {time.perf_counter() - t0:.0f} s, test/acc {summary.get('test/acc')}")
    return "finished"


def _fit(args: list[str], ckpt_path: Optional[str]) -> dict:
    """One trial through the job API (lit_opt/jobs.py): the same run as `fit ARGS`."""
    from lit_opt.jobs import prepare_fit

    return prepare_fit(args, ckpt_path=ckpt_path).run()


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def run_study(study: specs.Study, log=print, jobs: int = 1) -> int:
    """Run every trial not finished yet (`jobs` at a time: lit_opt/studies/parallel.py), then
    write STUDY/report/. Returns an exit code."""
    import threading

    on_main = threading.current_thread() is threading.main_thread()
    # A trial's own handler takes SIGTERM while it trains (saving last.ckpt); between trials
    # and while one loads, this one ends the study the same way Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if on_main else None
    try:
        return _run_trials(study, log, jobs)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _run_trials(study: specs.Study, log=print, jobs: int = 1) -> int:
    code = 0
    n = len(study.trials)
    log(f"{study.kind}: {n} trials in {study.out}" + (f", {jobs} at a time" if jobs > 1 else ""))
    try:
        if jobs > 1:
            from lit_opt.studies.parallel import run_parallel

            todo = [(t, *p) for t in study.trials if (p := prepare_trial(study, t, log)) is not None]
            code = run_parallel(study, todo, jobs, log)
        for i, trial in enumerate(study.trials if jobs == 1 else [], 1):
            log(f"[{i}/{n}] {trial.name}")
            try:
                run_trial(study, trial, log)
            except (KeyboardInterrupt, Terminated, LitOptError):
                raise
            except Exception:  # noqa: BLE001  (one broken trial must not end a long study)
                traceback.print_exc()
                print(f"error: trial {trial.name} failed; the study goes on (run it again to retry)",
                      file=sys.stderr)
                code = 1
    except (KeyboardInterrupt, Terminated) as exc:
        by = "by SIGTERM" if isinstance(exc, Terminated) else ""
        print(f"\nStudy stopped{' ' + by if by else ''}. Run the same command again to resume: finished "
              "trials are skipped, an interrupted one resumes from its last.ckpt.", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    except LitOptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from lit_opt.studies.report import write_report

    report = write_report([study.out], study.out / "report")
    log(f"report: {report}")
    return code
