"""`python -m lit_opt SUBCOMMAND ...`: train, evaluate and study optimizers headless.

    python -m lit_opt fit                                    # MNIST, deep MLP, SGD, 5 epochs
    python -m lit_opt fit --config configs/seed003_best_mlp.yaml
    python -m lit_opt fit --model.optimizer adam --model.lr 1e-3 --data.name fashion_mnist
    python -m lit_opt fit --ckpt_path checkpoints/RUN/last.ckpt   # resume RUN in its folder
    python -m lit_opt test --config checkpoints/RUN/config.yaml --ckpt_path checkpoints/RUN/best.ckpt
    python -m lit_opt fit --print_config                     # every key with its default

The Trainer subcommands (fit, validate, test, predict) go to LightningCLI; the project's
other subcommands have their own small parsers, imported only when used so that
`--help` stays fast. LightningCLI's own --optimizer/--lr_scheduler are switched off:
an optimizer is chosen one way, by registry name (`--model.optimizer`).
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path
from typing import Optional

TRAINER_COMMANDS = {
    "fit": "train a model; each fresh run gets its own folder under checkpoints/",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the official test set",
    "predict": "class probabilities for the test set, written to predictions-<time>.csv",
}
# name -> ("module:function", description); the function takes argv and returns an exit code.
OTHER_COMMANDS: dict[str, tuple[str, str]] = {
    "toy": ("lit_opt.toy:main", "optimizers on 1-D/2-D toy functions and the seminar's worked examples"),
    "classify": ("lit_opt.inference:main", "classify pictures with a trained checkpoint"),
    "compare": ("lit_opt.studies.runner:compare_main", "optimizers x datasets x seeds, lr chosen on validation; a report"),
    "sweep": ("lit_opt.studies.runner:sweep_main", "one or two config keys over their values x seeds; a report"),
    "report": ("lit_opt.studies.report:main", "one Markdown/CSV/PNG report for any finished run folders"),
    "lr-find": ("lit_opt.lr_find:main", "Lightning's learning-rate range test for any fit options; a plot"),
    "sharpness": ("lit_opt.sharpness_cli:main", "top Hessian eigenvalue and trace of a checkpoint's training objective"),
    "landscape": ("lit_opt.landscape:main", "loss and accuracy along a line or over a plane in weight space; CSV and PNG"),
}

USAGE = """usage: python -m lit_opt SUBCOMMAND [options]

subcommands:
{commands}

`python -m lit_opt SUBCOMMAND --help` lists a subcommand's options.
"""


def _usage() -> str:
    rows = {**TRAINER_COMMANDS, **{k: v[1] for k, v in OTHER_COMMANDS.items()}}
    return USAGE.format(commands="\n".join(f"  {name:<10} {text}" for name, text in rows.items()))


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command in OTHER_COMMANDS:
        module, function = OTHER_COMMANDS[command][0].split(":")
        return int(getattr(importlib.import_module(module), function)(rest) or 0)
    if command not in TRAINER_COMMANDS:
        choices = ", ".join([*TRAINER_COMMANDS, *OTHER_COMMANDS])
        print(f"error: unknown subcommand {command!r}; choose one of: {choices}", file=sys.stderr)
        return 2
    return run_trainer_command(command, rest)


def _more_epochs(args: list[str]) -> list[str]:
    """`--more_epochs N` with `--ckpt_path RUN/last.ckpt`: train N epochs past the last one the
    run completed (its epochs.csv, trimmed to the checkpoint), as `--trainer.max_epochs`. A
    schedule that has ended holds its final rate; early stopping's patience restarts."""
    from lit_opt.errors import ConfigError

    if not any(a == "--more_epochs" or a.startswith("--more_epochs=") for a in args):
        return args
    out, n, ckpt, i = [], None, None, 0
    while i < len(args):
        a = args[i]
        if a == "--more_epochs" or a.startswith("--more_epochs="):
            value = a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if "=" in a else 2
            try:
                n = int(value)
            except ValueError:
                raise ConfigError(f"--more_epochs must be a whole number of epochs, at least 1; got {value!r}") from None
            if n < 1:
                raise ConfigError(f"--more_epochs must be a whole number of epochs, at least 1; got {n}")
            continue
        if a == "--ckpt_path" and i + 1 < len(args):
            ckpt = args[i + 1]
        elif a.startswith("--ckpt_path="):
            ckpt = a.split("=", 1)[1]
        if a.startswith("--trainer.max_epochs"):
            raise ConfigError("give --more_epochs or --trainer.max_epochs, not both")
        out.append(a)
        i += 1
    from lit_opt.run_files import read_epochs
    from lit_opt.runs import run_dir_of_checkpoint

    run_dir = run_dir_of_checkpoint(ckpt) if ckpt else None
    if run_dir is None:
        raise ConfigError("--more_epochs continues a run: give its checkpoint, --ckpt_path RUN/last.ckpt")
    done = len([row for row in read_epochs(run_dir) if row.get("epoch") is not None])
    return [*out, "--trainer.max_epochs", str(done + n)]


def _with_run_config(args: list[str]) -> list[str]:
    """Put config files first, so every explicit flag overrides them wherever it was typed
    (a saved config.yaml holds `ckpt_path: null`, which would otherwise undo an earlier
    --ckpt_path); and `--ckpt_path RUN/x.ckpt` with no --config uses RUN's own config.yaml."""
    configs, rest, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a in ("--config", "-c") and i + 1 < len(args):
            configs += ["--config", _checked_config_file(args[i + 1])]
            i += 2
            continue
        if a.startswith("--config="):
            configs += ["--config", _checked_config_file(a.split("=", 1)[1])]
        elif a.split("=", 1)[0] in FLOAT_FLAGS:
            if "=" in a:
                rest.append(_yaml_special_number(a))
            else:
                rest.append(a)
                if i + 1 < len(args):
                    rest.append(_yaml_special_number(args[i + 1]))
                    i += 1
        else:
            rest.append(a)
        i += 1
    if not configs:
        ckpt = None
        for j, a in enumerate(rest):
            if a == "--ckpt_path" and j + 1 < len(rest):
                ckpt = rest[j + 1]
            elif a.startswith("--ckpt_path="):
                ckpt = a.split("=", 1)[1]
        if ckpt:
            from lit_opt.runs import run_dir_of_checkpoint

            run_dir = run_dir_of_checkpoint(ckpt)
            if run_dir is not None:
                configs = ["--config", _found_config_text(run_dir / "config.yaml")]
    return [*configs, *rest]


def _checked_config_file(value: str) -> str:
    """A --config the user named: a missing file or broken YAML is reported with the file's
    name (jsonargparse gives the line but not the file). Its content is the user's choice."""
    import yaml

    from lit_opt.errors import ConfigError

    path = Path(value)
    if not path.exists():
        try:
            if isinstance(yaml.safe_load(value), dict):  # YAML text, not a file name
                return value
        except yaml.YAMLError:
            pass
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else
                          f"config file {path} is not a file")
    try:
        yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return value


# Number settings where `nan` or `inf` may be typed (and is then refused by lit_opt's range
# check with a clear message); every other value is passed on untouched.
FLOAT_FLAGS = {"--model.lr", "--model.weight_decay", "--model.l2", "--model.dropout", "--model.label_smoothing"}
_SPECIAL_NUMBERS = {"nan": ".nan", "inf": ".inf", "+inf": ".inf", "-inf": "-.inf"}


def _yaml_special_number(arg: str) -> str:
    """`nan`/`inf` as YAML spells them, so `--model.lr nan` reaches lit_opt's own range check
    ("must be > 0") instead of jsonargparse calling the value a string."""
    flag, eq, value = arg.partition("=")
    if eq and flag.startswith("--"):
        return f"{flag}={_SPECIAL_NUMBERS.get(value.lower(), value)}"
    return _SPECIAL_NUMBERS.get(arg.lower(), arg)


def _found_config_text(path: Path) -> str:
    """A run's config.yaml, checked to hold plain settings only (lit_opt/found_config.py), as
    YAML text: jsonargparse parses exactly what was checked, not the file a second time."""
    import yaml

    from lit_opt.found_config import read_found_config

    return yaml.safe_dump(read_found_config(path), sort_keys=False)


def run_trainer_command(command: str, args: list[str]) -> int:
    """Run a Trainer subcommand; returns its exit code (lit_opt/errors.py: EXIT_*)."""
    from lit_opt import errors
    from lit_opt.errors import DivergenceError, LitOptError, RunStopped, StorageError

    import os

    from lit_opt.runs import RUN_DIR_ENV, held_run_dirs, release_run_locks

    # Lightning advice that does not apply here: the data is in memory (no workers), a
    # resumed run appends to its own folder on purpose, per-class accuracies are already
    # reduced across processes, and short test runs log less often than every 50 steps.
    for message in (".*exists and is not empty.*", ".*does not have many workers.*",
                    ".*isinstance\\(treespec, LeafSpec\\).*", ".*smaller than the logging interval.*",
                    ".*sync_dist=True.*"):
        warnings.filterwarnings("ignore", message=message)
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    run_dir_before = os.environ.get(RUN_DIR_ENV)
    held_before = held_run_dirs()
    try:
        from lit_opt.lightning_cli import LitOptCLI

        cli = LitOptCLI(args=[command, *_with_run_config(_more_epochs(args) if command == "fit" else args)])
    except RunStopped as exc:
        print(f"\n{exc} {_resume_hint(exc)}", file=sys.stderr)
        return exc.exit_code
    except SIGTERMException:  # Lightning's own handler, outside training (loading, evaluating)
        print("\nStopped by SIGTERM before training began or while evaluating; nothing was lost.",
              file=sys.stderr)
        return errors.EXIT_TERMINATED
    except DivergenceError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return errors.EXIT_DIVERGED
    except (LitOptError, MisconfigurationException) as exc:
        if isinstance(exc, StorageError):
            print(f"\nerror: {exc}", file=sys.stderr)
            return errors.EXIT_IO_ERROR
        # MisconfigurationException: Lightning's own check of a Trainer setting (e.g. gradient
        # clipping with an optimizer that steps by hand); its message says what is wrong.
        _remove_if_empty(os.environ.get(RUN_DIR_ENV), run_dir_before)
        print(f"error: {exc}", file=sys.stderr)
        return errors.EXIT_BAD_INPUT
    except OSError as exc:  # a file lit_opt writes or reads: disk full, permission, I/O error
        print(f"\nerror: {StorageError.describe(exc)}", file=sys.stderr)
        return errors.EXIT_IO_ERROR
    finally:
        release_run_locks(new_since=held_before)
    summary = getattr(cli, "summary", None)
    if summary:
        print(json.dumps(summary, indent=2))
    return errors.EXIT_OK


def _remove_if_empty(run_dir, previous) -> None:
    """A run that failed before writing anything leaves no empty folder behind."""
    from pathlib import Path

    from lit_opt.runs import remove_if_unused

    if run_dir and run_dir != previous:
        remove_if_unused(Path(run_dir))


def _resume_hint(exc) -> str:
    run_dir = getattr(exc, "run_dir", None)
    if run_dir is None:
        return ""
    return f"Resume with:\n  python -m lit_opt fit --ckpt_path {Path(run_dir) / 'last.ckpt'}"


if __name__ == "__main__":
    sys.exit(main())
