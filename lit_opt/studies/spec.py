"""A study's trials: which `fit` runs a sweep or a comparison consists of, and their commands.

    parse_values("logspace(-5,-1,10)")     # [1e-05, 2.783e-05, ..., 0.1] (4 significant digits)
    parse_values("[10, 50, 100]")          # [10, 50, 100]; also "0,0.25,0.5", a YAML list, a scalar
    study = sweep_study({"sweep": {"model.l2": "logspace(-5,-1,3)"}, "seeds": 2}, out="studies/l2")
    study.trials[0].command()              # 'python -m lit_opt fit --model.l2 1.0e-05 ... --run.name l2=1e-05_seed0'

A study file (configs/studies/*.yaml) holds the same keys as the dicts given here:

    kind: sweep | compare
    base: ../seed003_best_mlp.yaml      # fit config(s), relative to the study file
    set: {trainer.max_epochs: 5}        # dotted fit keys for every trial
    sweep: {model.l2: logspace(-5, -1, 10)}           # sweep: one or two keys (their product)
    variants: {linear: {model.net: linear}, ...}      # sweep: named sets of keys (optional)
    datasets: [mnist, fashion_mnist]                  # compare: names, or {label: {keys}}
    optimizers: {sgd: {lr: [0.01, 0.1]}, sam: {lr: 0.001, model.optimizer_args: {base: adam}}}
    seeds: 2                            # N (0..N-1) or a list
    tune: all_seeds | first_seed        # compare: an lr grid on every seed, or on the first seed only
    target: 0.95                        # validation accuracy for "epochs/seconds to target"
    out: studies/seed003_l2             # the study folder

Trials are the product of the axes (variants, each swept key; or datasets x optimizers x
learning rates) times the seeds. Trial names are made from the values, so they are the
same every time (resume relies on that): `l2=0.001_seed0`, `mnist_adam_lr=0.001_seed1`.
Each trial is `python -m lit_opt fit [--config BASE] [set keys] [fit options] [trial keys]
--seed_everything S --run.root STUDY --run.name TRIAL`, later options winning.

`tune: first_seed` (compare) is DeepOBS's two-stage protocol: stage 1 runs every learning
rate of an optimizer's grid with the first seed only; once those have finished, the rate with
the highest best validation accuracy of that seed is chosen per (dataset, optimizer)
(tuning.choose_index: diverged runs lose, a tie goes to the smaller rate) and stage 2 runs
the other seeds at that rate only (Study.add_stage_two). An optimizer with a single learning
rate has nothing to choose: all its seeds are in stage 1. Trial names are the same as with
`tune: all_seeds` (the default: every grid point with every seed).
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from lit_opt.errors import ConfigError

SEED_KEY = "seed_everything"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# fit options a study sets itself, per trial
OWN_OPTIONS = ("--run.root", "--run.name", "--seed_everything", "--ckpt_path")
FIT_PREFIXES = ("--config", "--trainer.", "--model.", "--data.", "--run.test")
_SPACE = re.compile(r"^\s*(logspace|linspace)\(\s*([^,()]+),\s*([^,()]+),\s*([^,()]+)\)\s*$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_NAME_BAD = re.compile(r"[^A-Za-z0-9._+=-]+")
TUNE_MODES = ("all_seeds", "first_seed")  # compare: which seeds run every point of an lr grid


# --- values ------------------------------------------------------------------------------


def _number(text: str):
    """'1e-5' -> 1e-05, '3' -> 3, '$LIT_OPT_DATA/x' -> '/data/x'; anything else unchanged
    (YAML 1.1 reads 1e-5 as a string)."""
    if isinstance(text, str) and "$" in text:
        return os.path.expandvars(text)
    if isinstance(text, str) and _NUMBER.match(text.strip()):
        value = float(text)
        return int(value) if re.match(r"^[-+]?\d+$", text.strip()) else value
    return text


def _numbers(value):
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return _number(value)


def round_sig(x: float, digits: int = 4) -> float:
    """Round to `digits` significant digits: logspace values stay readable in names and commands."""
    return float(f"{x:.{digits}g}")


def parse_values(spec) -> list:
    """The values of a swept key: `logspace(a,b,n)` (10**a .. 10**b), `linspace(a,b,n)`,
    a YAML list, a comma list (`0,0.25,0.5`), or one value."""
    if isinstance(spec, (list, tuple)):
        values = [_numbers(v) for v in spec]
    elif isinstance(spec, str) and _SPACE.match(spec):
        kind, a, b, n = _SPACE.match(spec).groups()
        try:
            a, b, n = float(a), float(b), int(n)
        except ValueError:
            raise ConfigError(f"{spec!r}: write {kind}(start, stop, count) with numbers") from None
        if n < 1:
            raise ConfigError(f"{spec!r}: the count must be >= 1")
        steps = [a + (b - a) * i / (n - 1) for i in range(n)] if n > 1 else [a]
        values = [round_sig(10 ** s) if kind == "logspace" else round_sig(s) for s in steps]
    elif isinstance(spec, str) and re.match(r"^\s*(logspace|linspace)\b", spec):
        raise ConfigError(f"{spec!r}: write logspace(start, stop, count) or linspace(start, stop, count)")
    elif isinstance(spec, str):
        import yaml

        try:
            loaded = yaml.safe_load(spec)
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot read the values {spec!r}: {exc}") from None
        if isinstance(loaded, str) and "," in loaded:
            loaded = [v.strip() for v in loaded.split(",") if v.strip()]
        values = [_numbers(v) for v in (loaded if isinstance(loaded, list) else [loaded])]
    else:
        values = [spec]
    if not values:
        raise ConfigError(f"no values in {spec!r}")
    return values


def _float_text(x: float) -> str:
    """A float as YAML 1.1 (what jsonargparse reads) sees a float: 1e-05 -> 1.0e-05."""
    if math.isinf(x) or math.isnan(x):
        return {float("inf"): ".inf", float("-inf"): "-.inf"}.get(x, ".nan")
    text = repr(float(x))
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        if exponent[0] not in "+-":
            exponent = "+" + exponent
        text = f"{mantissa}e{exponent}"
    return text


def cli_value(value, nested: bool = False) -> str:
    """A config value as one command-line word that `fit` parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(cli_value(v, True) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {cli_value(v, True)}" for k, v in value.items()) + "}"
    text = str(value)
    return f'"{text}"' if nested and not re.match(r"^[A-Za-z_][A-Za-z0-9_./-]*$", text) else text


def label_value(value) -> str:
    """A value as it appears in trial names and report tables: 1e-05, 0.25, 100x100x100."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "x".join(label_value(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return "-".join(f"{k}-{label_value(v)}" for k, v in value.items()) if value else "none"
    return str(value)


def short_key(key: str) -> str:
    """model.net_args.hidden -> hidden; model.l2 -> l2; data.batch_size -> batch_size; data.name -> dataset."""
    return "dataset" if key == "data.name" else key.rsplit(".", 1)[-1]


def _name_part(text: str) -> str:
    return _NAME_BAD.sub("-", text).strip("-") or "x"


# --- trials ------------------------------------------------------------------------------


@dataclass
class Trial:
    name: str
    seed: int
    overrides: dict[str, Any]  # the trial's own keys (its axis values), dotted
    args: list[str]  # `fit`'s arguments
    family: str = ""  # compare: dataset and optimizer (mnist_adam), the trials an lr is chosen among
    stage: int = 0  # tune first_seed: 1 (a grid point with the first seed) or 2 (a chosen rate); else 0

    @property
    def lr(self):
        return self.overrides.get("model.lr")

    def command(self) -> str:
        return "python -m lit_opt fit " + shlex.join(self.args)

    def to_json(self) -> dict:
        data = {"name": self.name, "seed": self.seed, "overrides": self.overrides, "args": self.args,
                "command": self.command()}
        if self.stage:
            data.update(family=self.family, stage=self.stage)
        return data


@dataclass
class Study:
    kind: str  # sweep, compare
    out: Path
    trials: list[Trial]
    keys: list[str] = field(default_factory=list)  # swept keys (the x axes of the figures)
    target: Optional[float] = None
    source: str = ""  # the command line that made the study
    tune: str = "all_seeds"  # compare: TUNE_MODES
    seeds: list[int] = field(default_factory=list)
    # tune first_seed: every trial stage 2 could run (each grid point x the other seeds), of
    # which add_stage_two keeps those at the chosen rates; and what was chosen, per family
    candidates: list[Trial] = field(default_factory=list)
    chosen: dict[str, dict] = field(default_factory=dict)

    @property
    def tune_seed(self) -> Optional[int]:
        return self.seeds[0] if self.tune == "first_seed" and self.seeds else None

    def grid(self) -> dict[str, list]:
        """Each family's learning rates (compare), in the study's order."""
        grid: dict[str, list] = {}
        for t in [*self.trials, *self.candidates]:
            if t.family:
                lrs = grid.setdefault(t.family, [])
                if t.lr not in lrs:
                    lrs.append(t.lr)
        return grid

    def stage_one(self, family: Optional[str] = None) -> list[Trial]:
        return [t for t in self.trials if t.stage == 1 and (family is None or t.family == family)]

    def add_stage_two(self, family: str, lr) -> list[Trial]:
        """The other seeds of `family` at its chosen `lr`, added to the trials (once)."""
        names = {t.name for t in self.trials}
        new = [t for t in self.candidates if t.family == family and t.lr == lr and t.name not in names]
        self.trials += new
        return new

    def to_json(self) -> dict:
        data = {"format": 1, "kind": self.kind, "keys": self.keys, "target": self.target,
                "source": self.source, "cwd": os.getcwd()}
        if self.kind == "compare":
            data.update(tune=self.tune, seeds=self.seeds)
        if self.tune == "first_seed":
            data.update(tune_seed=self.tune_seed, grid=self.grid(), chosen=self.chosen)
        return {**data, "trials": [t.to_json() for t in self.trials]}


Axis = list[tuple]  # (label for the trial name, dotted keys[, label in the family name])


def _seeds(spec) -> list[int]:
    if spec is None:
        return [0]
    if isinstance(spec, str):
        spec = spec.strip()
        if "," in spec:
            spec = [s for s in spec.split(",") if s.strip()]
        elif spec.isdigit():
            spec = int(spec)
        else:
            raise ConfigError(f"seeds: give a count N (seeds 0..N-1) or a comma list like 0,3,7, not {spec!r}")
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise ConfigError(f"seeds must be >= 1, got {spec}")
        return list(range(spec))
    try:
        seeds = [int(s) for s in spec]
    except (TypeError, ValueError):
        raise ConfigError(f"seeds: give a count N or a list of integers, not {spec!r}") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"seeds must be distinct and not empty, got {seeds}")
    return seeds


def _keys_dict(spec, what: str) -> dict[str, Any]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{what} must be a mapping of dotted config keys to values, got {spec!r}")
    for key in spec:
        if not isinstance(key, str) or key.split(".")[0] not in ("model", "data", "trainer", "run", SEED_KEY):
            raise ConfigError(f"{what}: {key!r} is not a fit config key (model.*, data.*, trainer.*, "
                              f"seed_everything); docs/reference.md lists them")
        if key in ("run.root", "run.name", SEED_KEY):
            raise ConfigError(f"{what}: {key} is set by the study for each trial")
    return {k: _numbers(v) for k, v in spec.items()}


def _value_axis(key: str, values: list) -> Axis:
    labels = [label_value(v) for v in values]
    if len(set(labels)) < len(labels):  # values too close for 4 digits: name them in full
        labels = [repr(v) for v in values]
    if len(set(labels)) < len(labels):
        raise ConfigError(f"{key}: the values {values} repeat")
    return [(f"{short_key(key)}={lab}", {key: v}) for lab, v in zip(labels, values)]


def _named_axis(spec, what: str, default_key: Optional[str] = None) -> Axis:
    """Named entries: a list of names (each sets `default_key`) or {name: {dotted keys}}."""
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",")]
    if isinstance(spec, list):
        if default_key is None:
            raise ConfigError(f"{what} must be a mapping of names to config keys")
        spec = {name: {} for name in spec}
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"{what} must be a non-empty list of names or mapping of names to config keys")
    axis = []
    for name, keys in spec.items():
        keys = dict(keys or {})
        if default_key and default_key not in keys:
            keys[default_key] = name
        axis.append((str(name), keys))
    return axis


def _optimizer_axis(spec) -> Axis:
    """Each optimizer with its learning rate(s): one entry per (optimizer, lr)."""
    axis = []
    for label, keys in _named_axis(spec, "optimizers", "model.optimizer"):
        lrs = keys.pop("lr", keys.pop("model.lr", None))
        keys = _keys_dict(keys, f"optimizers.{label}")
        for lr in parse_values(lrs) if lrs is not None else [None]:
            entry = {**keys, "model.lr": lr} if lr is not None else keys
            axis.append((f"{label}_lr={label_value(lr)}" if lr is not None else label, entry, label))
    return axis


def _base_args(spec: dict, base_dir: Optional[Path], fit_args: Sequence[str]) -> list[str]:
    args: list[str] = []
    bases = spec.get("base") or []
    for base in [bases] if isinstance(bases, str) else bases:
        path = Path(os.path.expandvars(str(base))).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise ConfigError(f"base config {path} does not exist")
        args += ["--config", os.path.relpath(path)]
    for key, value in _keys_dict(spec.get("set"), "set").items():
        args += [f"--{key}", _expand(cli_value(value))]
    return args + list(fit_args)


def _expand(text: str) -> str:
    return os.path.expandvars(text) if "$" in text else text


def check_fit_args(fit_args: Sequence[str], command: str) -> None:
    """Options after the study's own are `fit` options; refuse typos before any trial starts."""
    for arg in fit_args:
        if not arg.startswith("-"):
            continue
        name = arg.split("=", 1)[0]
        if name in OWN_OPTIONS:
            raise ConfigError(f"{name} is set by the study for each trial (use --out for the study folder"
                              f"{', --seeds for the seeds' if name == '--seed_everything' else ''})")
        if not name.startswith(FIT_PREFIXES):
            raise ConfigError(f"unknown option {name}: `python -m lit_opt {command} --help` lists the "
                              f"study's options; fit options start with --config, --model., --data., "
                              f"--trainer.")


def _trials(axes: list[Axis], seeds: list[int], base: list[str], out: Path) -> list[Trial]:
    trials, names = [], set()
    for combo in itertools.product(*axes) if axes else [()]:
        overrides: dict[str, Any] = {}
        for _, keys, *_ in combo:
            overrides.update(keys)
        stem = "_".join(_name_part(label) for label, *_ in combo)
        family = "_".join(_name_part(entry[2] if len(entry) > 2 else entry[0]) for entry in combo)
        for seed in seeds:
            name = f"{stem}_seed{seed}" if stem else f"seed{seed}"
            if name in names:
                raise ConfigError(f"two trials would both be named {name}; give the entries distinct names")
            names.add(name)
            args = [*base]
            for key, value in overrides.items():
                args += [f"--{key}", _expand(cli_value(value))]
            args += ["--seed_everything", str(seed), "--run.root", str(out), "--run.name", name, *QUIET]
            trials.append(Trial(name, seed, overrides, args, family))
    return trials


def _out(spec: dict, out, default: str) -> Path:
    return Path(out or spec.get("out") or default)


def sweep_study(spec: dict, out=None, base_dir: Optional[Path] = None, fit_args: Sequence[str] = (),
                source: str = "") -> Study:
    """A sweep: the product of the variants and each swept key's values, times the seeds."""
    sweep = _keys_dict(spec.get("sweep"), "sweep")
    if len(sweep) > 2:
        raise ConfigError(f"a sweep varies one or two keys (their product), got {len(sweep)}: {list(sweep)}")
    axes: list[Axis] = []
    if spec.get("variants"):
        variants = _named_axis(spec["variants"], "variants")
        axes.append([(label, _keys_dict(keys, f"variants.{label}")) for label, keys in variants])
    axes += [_value_axis(key, parse_values(values)) for key, values in sweep.items()]
    if spec.get("tune") not in (None, "all_seeds"):
        raise ConfigError(f"tune: {spec['tune']} is for compare studies (a learning-rate grid per optimizer)")
    path = _out(spec, out, "checkpoints/studies/sweep")
    seeds = _seeds(spec.get("seeds"))
    trials = _trials(axes, seeds, _base_args(spec, base_dir, fit_args), path)
    for trial in trials:
        trial.family = ""
    return Study("sweep", path, trials, list(sweep), spec.get("target"), source, seeds=seeds)


def compare_study(spec: dict, out=None, base_dir: Optional[Path] = None, fit_args: Sequence[str] = (),
                  source: str = "") -> Study:
    """A comparison: datasets x optimizers (each with one lr or an lr grid) x seeds."""
    if not spec.get("optimizers"):
        raise ConfigError("compare needs optimizers, e.g. --optimizers sgd:0.1 adam:1e-4,1e-3")
    axes: list[Axis] = []
    if spec.get("datasets"):
        datasets = _named_axis(spec["datasets"], "datasets", "data.name")
        axes.append([(label, _keys_dict(keys, f"datasets.{label}")) for label, keys in datasets])
    axes.append(_optimizer_axis(spec["optimizers"]))
    tune = spec.get("tune") or "all_seeds"
    if tune not in TUNE_MODES:
        raise ConfigError(f"tune: {tune!r} is not one of {', '.join(TUNE_MODES)} (all_seeds: every learning "
                          f"rate with every seed; first_seed: the grid with the first seed, then the other "
                          f"seeds at the chosen rate)")
    path = _out(spec, out, "checkpoints/studies/compare")
    seeds = _seeds(spec.get("seeds"))
    trials = _trials(axes, seeds, _base_args(spec, base_dir, fit_args), path)
    study = Study("compare", path, trials, ["data.name", "model.optimizer", "model.lr"], spec.get("target"),
                  source, tune=tune, seeds=seeds)
    if tune == "first_seed":
        grid = study.grid()
        for trial in trials:
            trial.stage = 1 if trial.seed == seeds[0] or len(grid[trial.family]) == 1 else 2
        study.trials = [t for t in trials if t.stage == 1]
        study.candidates = [t for t in trials if t.stage == 2]
    return study


def read_study_file(path) -> tuple[dict, Path]:
    """A study file's mapping and the folder its relative paths start from."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    known = {"kind", "base", "set", "sweep", "variants", "datasets", "optimizers", "seeds", "tune", "target",
             "out"}
    unknown = set(spec) - known
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; a study file holds {sorted(known)}")
    spec.setdefault("out", f"checkpoints/studies/{path.stem}")
    return spec, path.parent
