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

`compare --tune first_seed` runs in two stages (DeepOBS's protocol): stage 1 is every
learning rate of each optimizer's grid with the first seed; then, per dataset and optimizer,
the rate with the best validation accuracy of that seed is chosen (diverged runs lose, a tie
goes to the smaller rate; decided again from the stage-1 folders on every run, so a rerun
resumes and skips as before) and stage 2 runs the other seeds at that rate only. With
`--jobs N` each stage runs N at a time, one stage after the other. `--print-commands` cannot
know stage 2 before stage 1 has finished: it prints stage 1's lines and says so on stderr;
run it again once they have finished and it prints stage 2's.
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
from lit_opt.studies.results import DIVERGED_FILE, load_run, trial_state
from lit_opt.studies.tuning import choose_index

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
        p.add_argument("--tune", choices=specs.TUNE_MODES,
                       help="how an lr grid is searched: all_seeds (default: every rate with every seed, the "
                            "best mean chosen afterwards) or first_seed (DeepOBS: every rate with the first "
                            "seed, then the other seeds at the rate with its best validation accuracy)")
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
    if kind == "compare" and args.tune is not None:
        spec["tune"] = args.tune
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
        if print_only and study.tune == "first_seed":
            waiting = decide_stage_two(study, log=lambda *a: None)  # stage 2 of finished stage 1s
        save_study(study)
    except LitOptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if print_only:
        if study.tune == "first_seed":
            _print_two_stage(study, waiting)
            return 0
        for trial in study.trials:
            print(trial.command())
        print(f"# {len(study.trials)} trials; afterwards: python -m lit_opt report {study.out}", file=sys.stderr)
        return 0
    jobs = _parser(kind).parse_known_args(list(argv))[0].jobs
    if jobs < 1:
        print(f"error: --jobs must be >= 1, got {jobs}", file=sys.stderr)
        return 2
    return run_study(study, jobs=jobs)


def _print_two_stage(study: specs.Study, waiting: set[str]) -> None:
    """--print-commands with tune first_seed: the stage-1 lines of every family whose stage 1
    has not finished, the stage-2 lines of every family whose rate is chosen; notes on stderr."""
    one = [t for t in study.stage_one() if t.family in waiting]
    two = [t for t in study.trials if t.stage == 2]
    for trial in [*one, *two]:
        print(trial.command())
    seed, others = study.tune_seed, ", ".join(map(str, study.seeds[1:])) or "none"
    err = sys.stderr
    if one:
        print(f"# tune first_seed, stage 1: {len(one)} lines: each learning rate of each grid with seed {seed} "
              f"(an optimizer with a single rate: every seed).", file=err)
        if len(study.seeds) > 1:
            print(f"# NOTE: stage 2 (seeds {others}, each at the rate chosen on seed {seed}'s best validation "
                  f"accuracy) depends on stage 1's results and is not printed. When these trials have "
                  f"finished, run this command again with --print-commands: it then prints stage 2's lines.",
                  file=err)
    done = [f for f in study.grid() if f not in waiting]
    if done:
        print(f"# stage 1 finished for {len(done)} of {len(study.grid())} dataset/optimizer pairs "
              f"(not printed again).", file=err)
    for family, info in study.chosen.items():
        if info.get("lr") is None:
            print(f"# {family}: {info.get('note')}", file=err)
    if two:
        rates = ", ".join(f"{f} lr={specs.label_value(i['lr'])}" for f, i in study.chosen.items()
                          if i.get("lr") is not None)
        print(f"# tune first_seed, stage 2: {len(two)} lines: seeds {others} at the rates chosen on seed "
              f"{seed}'s best validation accuracy ({rates}).", file=err)
    print(f"# afterwards: python -m lit_opt report {study.out}", file=err)


def decide_stage_two(study: specs.Study, log=print) -> set[str]:
    """tune first_seed: for every family (dataset, optimizer) whose stage-1 trials have all
    finished or diverged, choose the learning rate and add its stage-2 trials (the other
    seeds at that rate) to study.trials; record the choice in study.chosen. Read from the
    stage-1 run folders alone, so the same folders always give the same choice. Returns the
    families whose stage 1 has not finished yet (nothing decided for them)."""
    waiting: set[str] = set()
    for family, lrs in study.grid().items():
        stage_one = study.stage_one(family)
        states = {t.name: trial_state(study.out / t.name) for t in stage_one}
        unfinished = [name for name, state in states.items() if state not in ("finished", "diverged")]
        if unfinished:
            waiting.add(family)
            if len(lrs) > 1:
                log(f"{family}: stage 1 not finished ({', '.join(unfinished)}); no learning rate chosen yet, "
                    f"so no stage 2 for it: run the study again")
            continue
        if len(lrs) == 1:
            continue  # nothing to choose: every seed ran in stage 1
        # grid points ascending, so that a tie goes to the smaller rate
        points = sorted((t for t in stage_one if t.seed == study.tune_seed), key=lambda t: t.lr)
        scores = [load_run(study.out / t.name).metric("best_val_acc") if states[t.name] == "finished" else None
                  for t in points]
        best = choose_index(scores)
        table = {specs.label_value(t.lr): (score if score is not None else states[t.name])
                 for t, score in zip(points, scores)}
        if best is None:
            study.chosen[family] = {"lr": None, "seed": study.tune_seed, "val_acc": table,
                                    "note": f"no learning rate finished with seed {study.tune_seed} "
                                            f"(every one diverged): none chosen, no stage 2"}
            log(f"{family}: {study.chosen[family]['note']}")
            continue
        chosen = points[best]
        study.chosen[family] = {"lr": chosen.lr, "seed": study.tune_seed, "best_val_acc": scores[best],
                                "trial": chosen.name, "val_acc": table}
        new = study.add_stage_two(family, chosen.lr)
        log(f"{family}: lr {specs.label_value(chosen.lr)} chosen on seed {study.tune_seed}'s best val acc "
            f"{scores[best]:.4f} (" + ", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                                               for k, v in table.items())
            + f"); seeds {', '.join(str(t.seed) for t in new) or '-'} run at it")
    return waiting


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
        log(f"{trial.name}: diverged in epoch {int(info.get('epoch') or 0) + 1}, step {info.get('step')}; going on")
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


def _run_batch(study: specs.Study, trials: list[specs.Trial], log=print, jobs: int = 1) -> int:
    """Run (or resume, or skip) `trials`, `jobs` at a time; 0, or 1 if one failed unexpectedly."""
    if jobs > 1:
        from lit_opt.studies.parallel import run_parallel

        todo = [(t, *p) for t in trials if (p := prepare_trial(study, t, log)) is not None]
        return run_parallel(study, todo, jobs, log)
    code, n = 0, len(trials)
    for i, trial in enumerate(trials, 1):
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
    return code


def _run_trials(study: specs.Study, log=print, jobs: int = 1) -> int:
    code = 0
    at_a_time = f", {jobs} at a time" if jobs > 1 else ""
    try:
        if study.tune == "first_seed":
            stage_one = [t for t in study.trials if t.stage != 2]
            log(f"{study.kind}, tune first_seed: stage 1, {len(stage_one)} trials in {study.out}{at_a_time}: "
                f"each learning rate with seed {study.tune_seed}")
            code = _run_batch(study, stage_one, log, jobs)
            decide_stage_two(study, log)
            save_study(study)  # the chosen rates and stage 2's trials
            stage_two = [t for t in study.trials if t.stage == 2]
            log(f"{study.kind}, tune first_seed: stage 2, {len(stage_two)} trials{at_a_time}: the other seeds "
                f"at the chosen rates")
            code = max(code, _run_batch(study, stage_two, log, jobs))
        else:
            log(f"{study.kind}: {len(study.trials)} trials in {study.out}{at_a_time}")
            code = _run_batch(study, study.trials, log, jobs)
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
