"""Reading a config that lit_opt picks up by itself: plain settings only, never code.

`test`, `validate`, `predict` and `fit --ckpt_path RUN/x.ckpt` without `--config`, and the
desktop app's Resume, read the run's own `config.yaml`. A run folder may come from anyone
(a shared archive, a colleague's disk), and jsonargparse imports whatever a config names in
a field whose type is a class: `trainer: {callbacks: [{class_path: pkg.mod.Cls}]}`, or
just `callbacks: [pkg.mod.Cls]`. With `checkpoints/` importable from the working folder, a
`notes.py` shipped in the run folder would run. So such a config is checked here, before
jsonargparse sees it, against what lit_opt itself writes there: known sections, plain
values, and no class anywhere. A config the user names with `--config` is the user's own
choice and is not checked.

    config = read_found_config("checkpoints/run/config.yaml")   # dict, or ConfigError

This module imports only PyYAML, so the app can call it on its GUI thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lit_opt.errors import ConfigError

# Top-level keys of the config.yaml that `fit` writes (LightningCLI's optimizer and
# lr_scheduler are switched off, so they never appear).
SECTIONS = ("seed_everything", "trainer", "model", "data", "run", "diagnostics", "ckpt_path", "weights_only")

# Trainer fields whose type is a class (or a list of them): jsonargparse imports a dotted
# string or a class_path dict given there. Only Lightning's registered names (no dots, e.g.
# strategy "ddp", accelerator "gpu", profiler "simple", plugins "bf16-mixed") and
# null/true/false may stand in them.
CLASS_FIELDS = ("accelerator", "strategy", "logger", "callbacks", "profiler", "plugins")

# Keys that make jsonargparse import and instantiate something wherever they appear.
CLASS_KEYS = ("class_path", "init_args", "__path__", "dict_kwargs")


def read_found_config(path: str | os.PathLike) -> dict:
    """The config at `path` as a dict, if it holds plain settings only; else ConfigError."""
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    check_found_config(config or {}, path)
    return config or {}


# Sections and model fields that jsonargparse reads as a mapping: given a string instead, it
# reads the string as YAML text or as the path of another file, which the check never saw.
MAPPING_SECTIONS = ("trainer", "model", "data", "run", "diagnostics")
MAPPING_FIELDS = {"model": ("net_args", "optimizer_args", "scheduler_args")}


def check_found_config(config: Any, path: str | os.PathLike) -> None:
    """Raise ConfigError unless `config` holds only plain settings in lit_opt's sections."""
    if not isinstance(config, dict):
        raise _refused(path, f"it holds a {type(config).__name__}, not a mapping of settings")
    unknown = [str(k) for k in config if k not in SECTIONS]
    if unknown:
        raise _refused(path, f"it has keys lit_opt does not write there ({', '.join(unknown)}; "
                             f"expected: {', '.join(SECTIONS)})")
    for section in MAPPING_SECTIONS:
        if not isinstance(config.get(section) or {}, dict):
            raise _refused(path, f"{section} is not a mapping of settings (a string there is read as "
                                 f"YAML text or as another file)")
        for field in MAPPING_FIELDS.get(section, ()):
            if not isinstance((config.get(section) or {}).get(field) or {}, dict):
                raise _refused(path, f"{section}.{field} is not a mapping (a string there is read as "
                                     f"YAML text or as another file)")
    steering = (config.get("run") or {}).get("steering")
    if steering is not None and not isinstance(steering, list):  # a string is read as a file or YAML
        raise _refused(path, "run.steering is not a list of changes (a string there is read as YAML "
                             "text or as another file)")
    problem = plain_data_problem(config)
    if problem:
        raise _refused(path, problem)
    trainer = config.get("trainer") or {}
    for field in CLASS_FIELDS:
        value = trainer.get(field)
        for item in value if isinstance(value, list) else [value]:
            if field in ("callbacks", "logger") and item not in (None, True, False):
                raise _refused(path, f"trainer.{field} is set to {item!r}, which names code to run")
            if isinstance(item, str) and ("." in item or "/" in item or ":" in item):
                raise _refused(path, f"trainer.{field} is set to {item!r}, which names code to import")
            if isinstance(item, dict):
                raise _refused(path, f"trainer.{field} is set to a class spec ({item!r})")


def plain_data_problem(data: Any, prefix: str = "") -> str | None:
    """Why `data` is not plain settings, or None: every value a number, bool, null, string or a
    list/mapping of them; no key that makes jsonargparse import (class_path, init_args, ...);
    no string that is itself YAML for a mapping or holds such a key (jsonargparse would parse
    it). Also used for a checkpoint's hyperparameters, which LightningCLI parses the same way."""
    import yaml

    for key, value in _walk(data, prefix):
        if key.rsplit(".", 1)[-1] in CLASS_KEYS or key.rsplit(".", 1)[-1] == "_class_path":
            return f"{key} names a class to import"
        if not isinstance(value, (dict, list, str, int, float, bool, type(None))):
            return f"{key} holds a {type(value).__name__}, not a plain value"
        if isinstance(value, str):
            if any(word in value for word in CLASS_KEYS):
                return f"{key} holds text naming a class to import"
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                continue
            if isinstance(parsed, dict) or (isinstance(parsed, list)
                                            and any(isinstance(v, (dict, list)) for v in parsed)):
                return f"{key} holds YAML text for a mapping, which would be parsed as settings"
    return None


def _walk(value: Any, prefix: str):
    """(dotted key, value) for every key and list item below `value`."""
    if isinstance(value, dict):
        for k, v in value.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            yield key, v
            yield from _walk(v, key)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            key = f"{prefix}[{i}]"
            yield key, v
            yield from _walk(v, key)


def _refused(path, reason: str) -> ConfigError:
    return ConfigError(
        f"{path} was not used: lit_opt reads a run's config.yaml by itself only when it holds plain "
        f"settings, and {reason}. A config that names code can run anything on this machine; if you "
        f"trust this one, name it yourself with --config {path} (the desktop app: Load YAML…).")
