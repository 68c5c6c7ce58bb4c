"""LitOptCLI: LightningCLI for fit/validate/test/predict, with lit_opt's run folders.
Programs (the desktop app, studies) build the same fit through lit_opt/jobs.py.

- The data module's shape, class names and statistics are linked into the model
  (`model.data_info`), so they are never typed twice and land in every checkpoint.
- `fit` creates `<run.root>/<run.name>/` (docs/reference.md has the layout), logs there,
  checkpoints there, and afterwards tests best.ckpt (`--run.test false` skips that).
- LightningCLI's --optimizer/--lr_scheduler are off: optimizers are chosen by registry name.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import warnings
from pathlib import Path
from typing import Optional

from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from lit_opt.callbacks import ThrottledProgressBar
from lit_opt.data import ClassificationDataModule
from lit_opt.diagnostics.layer_updates import EVERY, HISTOGRAMS_EVERY
from lit_opt.errors import ConfigError
from lit_opt.internals import skip_unused_hooks
from lit_opt.module import ClassifierModule
from lit_opt.runs import (
    DEFAULT_ROOT,
    AtomicCheckpointIO,
    default_run_name,
    lock_run_dir,
    new_run_dir,
    run_callbacks,
    run_dir_of_checkpoint,
    run_logger,
    shared_run_dir,
)

TRAINER_DEFAULTS = {
    "max_epochs": 5,
    "accelerator": "auto",
    "devices": 1,  # several devices only when asked: Lightning's DDP relaunches the program
    "log_every_n_steps": 50,
}


# Model options that say how to run the net, not what it is: a command with --ckpt_path
# takes them from its own arguments and config (lit_opt adds the run's config.yaml), never
# from the checkpoint's hyperparameters.
RUNTIME_MODEL_OPTIONS = ("channels_last", "compile", "tta")


class LitOptCLI(LightningCLI):
    """`fit_ckpt_path`/`prepare_fit` serve run=False use: build a fit run without starting it."""

    def __init__(self, args=None, run: bool = True, prepare_fit: bool = False,
                 fit_ckpt_path: Optional[str] = None, listeners: tuple = ()):
        self.run_dir: Optional[Path] = None
        self._listeners = tuple(listeners)  # the live stream's, besides the run folder's files
        self.summary: Optional[dict] = None
        self._prepare_fit, self._fit_ckpt_path = prepare_fit, fit_ckpt_path
        self._ckpt: Optional[dict] = None  # the checkpoint being resumed or evaluated, read once
        self._typed_model_keys = typed_model_keys(args)
        with warnings.catch_warnings():
            # args always come from lit_opt (the dispatcher, prepare_fit), never sys.argv twice.
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
            self._init_cli(args, run)

    def _init_cli(self, args, run: bool) -> None:
        super().__init__(
            ClassifierModule, ClassificationDataModule, args=args, run=run,
            auto_configure_optimizers=False, seed_everything_default=0,
            trainer_defaults=TRAINER_DEFAULTS, save_config_callback=SaveConfigCallback,
            parser_kwargs={"default_env": False,
                           # A program (prepare_fit) gets the parser's message as an exception,
                           # not a usage dump on stderr and SystemExit.
                           **({"exit_on_error": False} if self._prepare_fit else {})})

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--run.name", type=Optional[str], default=None,
                            help="run folder name (default: <dataset>-<net>-<optimizer>-<date>-<time>)")
        parser.add_argument("--run.root", type=str, default=DEFAULT_ROOT,
                            help="folder that holds the run folders")
        parser.add_argument("--run.test", type=bool, default=True,
                            help="after fit, evaluate best.ckpt on the test set")
        parser.add_argument("--run.steering", type=Optional[list[dict]], default=None,
                            help="changes while training: [{step: S, lr_factor: F, momentum: M, weight_decay: W}, "
                                 "...], each from optimizer step S on (the app records its changes here)")
        parser.add_argument("--diagnostics.every", type=int, default=EVERY,
                            help="per-layer weight norm, update norm and update/weight ratio every this many "
                                 "optimizer steps (0: off)")
        parser.add_argument("--diagnostics.histograms_every", type=int, default=HISTOGRAMS_EVERY,
                            help="per-layer histograms of weights, gradients and step sizes every this many "
                                 "optimizer steps (0: off)")
        parser.add_argument("--diagnostics.sharpness_every", type=int, default=0,
                            help="top Hessian eigenvalue of the training objective (power iteration) beside the "
                                 "optimizer's stability threshold every this many optimizer steps (0: off)")
        parser.add_argument("--diagnostics.sharpness_samples", type=int, default=1000,
                            help="training images (a fixed, seeded subset) the sharpness is measured on")
        parser.link_arguments("data.info", "model.data_info", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        # Right after parsing, LightningCLI reads the checkpoint's hyperparameters with a bare
        # torch.load and lets them silently replace the model settings given: check the file
        # first (a bad one gets lit_opt's clear message, not a traceback) and refuse settings
        # it would ignore.
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        self._runtime = {}
        if ckpt:
            self._ckpt = _read_checkpoint(ckpt)
            refuse_changed_model_settings(ckpt, self._ckpt, self.config[sub].model.as_dict(),
                                          self._typed_model_keys)
            self._runtime = {k: self.config[sub].model.get(k) for k in RUNTIME_MODEL_OPTIONS}

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        for key, value in getattr(self, "_runtime", {}).items():
            setattr(cfg.model, key, value)  # how to run is this command's choice, not the checkpoint's
        ckpt = cfg.get("ckpt_path") or self._fit_ckpt_path
        if ckpt:
            if self._ckpt is None:
                self._ckpt = _read_checkpoint(ckpt)
            check_checkpoint_dataset(ckpt, self._ckpt, cfg.data.name)
        if cfg.get("data") and cfg.data.get("val_size") == 0 and cfg.model.get("early_stopping") is not None:
            raise ConfigError("model.early_stopping watches val/acc, and data.val_size 0 leaves no "
                              "validation set; give data.val_size > 0 or set early_stopping to null")
        if self.subcommand and cfg.get("weights_only", False) is None:
            cfg["weights_only"] = True  # resume and evaluate without unpickling code

    def instantiate_trainer(self, **kwargs):
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer_cfg = (self.config_init[self.subcommand] if self.subcommand else self.config_init).get("trainer") or {}
        if self.subcommand == "fit" or self._prepare_fit:
            self.run_dir = self._fit_run_dir(cfg)
            lock_run_dir(self.run_dir)  # released by the caller: run_trainer_command, FitJob.run
            loggers = (run_logger(self.run_dir, resumed_at=self._batches_in_checkpoint(cfg))
                       if trainer_cfg.get("logger") in (None, True) else [])
            validating = cfg.data.get("val_size") != 0
            if not validating:  # data.val_size 0: every training image trains; nothing to validate on
                kwargs["limit_val_batches"], kwargs["num_sanity_val_steps"] = 0, 0
                print("data.val_size 0: no validation split; every training image trains, there is no "
                      "validation pass and no best.ckpt, and the test set is scored with last.ckpt",
                      file=sys.stderr)
            kwargs["callbacks"] = [*(trainer_cfg.get("callbacks") or []),
                                   *run_callbacks(self.run_dir, self._listeners, cfg.run.get("steering"),
                                                  diagnostics=_plain_options(cfg.get("diagnostics")),
                                                  loggers=tuple(loggers), validation=validating)]
            if loggers:
                kwargs["logger"] = loggers
            kwargs["default_root_dir"] = str(self.run_dir)
        else:
            ckpt = cfg.get("ckpt_path")
            run_dir = run_dir_of_checkpoint(ckpt) if ckpt else None
            kwargs["default_root_dir"] = str(run_dir or Path(cfg.run.root))
            if trainer_cfg.get("logger") in (None, True):
                kwargs["logger"] = False
            kwargs.setdefault("enable_checkpointing", False)  # evaluation saves nothing
            self.save_config_callback = None  # evaluation writes no config into a run folder
        if not trainer_cfg.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        callbacks = kwargs.get("callbacks", trainer_cfg.get("callbacks") or [])
        if cfg.trainer.get("enable_progress_bar") is not False and not any(
                isinstance(c, ProgressBar) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, ThrottledProgressBar()]
        trainer = super().instantiate_trainer(**kwargs)
        skip_unused_hooks(trainer.callbacks)
        return trainer

    def _batches_in_checkpoint(self, cfg) -> Optional[int]:
        """The batches a resumed checkpoint had trained (the live stream's count), when it
        continues in its own run folder; None for a fresh run or a branch."""
        ckpt = cfg.get("ckpt_path") or self._fit_ckpt_path
        folder = run_dir_of_checkpoint(ckpt) if ckpt else None
        if not self._ckpt or folder is None or folder.resolve() != Path(self.run_dir).resolve():
            return None
        state = (self._ckpt.get("callbacks") or {}).get("LiveStream") or {}
        return int(state["batches"]) if state.get("batches") else None

    def _fit_run_dir(self, cfg) -> Path:
        ckpt = cfg.get("ckpt_path") or self._fit_ckpt_path
        if ckpt:
            run_dir = run_dir_of_checkpoint(ckpt)
            if run_dir is not None and _is_latest(Path(ckpt), self._ckpt, run_dir):
                # Resume in the run's own folder, keeping its first config.
                stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
                self.save_config_kwargs["config_filename"] = f"config.resumed-{stamp}.yaml"
                return run_dir
            if run_dir is not None:  # an earlier state: branch into a new folder, never over last.ckpt
                return new_run_dir(run_dir.parent, None, f"{run_dir.name}-from-{Path(ckpt).stem}")
        return shared_run_dir(cfg.run.root, cfg.run.name,
                              default_run_name(cfg.data.name, cfg.model.net, cfg.model.optimizer))

    def after_predict(self) -> None:
        """Write the class probabilities (predict's output) beside the checkpoint, never over a file."""
        import csv

        import torch

        if not self.trainer.is_global_zero:
            return
        probs = torch.cat([p.cpu() for p in self.trainer.predict_loop.predictions])
        labels = self.datamodule.test_set[1][:len(probs)].tolist()
        names = self.model.class_names
        cfg = self.config["predict"]
        folder = run_dir_of_checkpoint(cfg.ckpt_path) if cfg.ckpt_path else None
        folder = folder or Path(cfg.run.root)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"predictions-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.csv"
        with path.open("x", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "label", "predicted", *(f"p[{n}]" for n in names)])
            for i, (label, row) in enumerate(zip(labels, probs.tolist())):
                w.writerow([i, names[label], names[max(range(len(row)), key=row.__getitem__)],
                            *(f"{v:.6f}" for v in row)])
        self.summary = {"predictions": str(path), "images": len(labels)}

    def after_fit(self) -> None:
        cfg = self.config["fit"]
        self.summary = finish_fit(self.trainer, self.model, self.datamodule, self.run_dir, cfg.run.test)


def _plain_options(section) -> dict:
    """A config section (a jsonargparse Namespace or a dict) as a plain dict."""
    if section is None:
        return {}
    return dict(section.as_dict() if hasattr(section, "as_dict") else section)


def _read_checkpoint(path) -> dict:
    """A lit_opt checkpoint, read without running code; CheckpointError (before any data loads)
    for a foreign one (a plain dict, another program's Lightning checkpoint)."""
    from lit_opt.inference import check_checkpoint, read_checkpoint

    ckpt = read_checkpoint(path)
    check_checkpoint(ckpt, path)
    return ckpt


def _is_latest(ckpt_path: Path, ckpt: Optional[dict], run_dir: Path) -> bool:
    """True if resuming from this checkpoint continues the run rather than rewinding it."""
    last = run_dir / "last.ckpt"
    if not last.exists() or last.resolve() == ckpt_path.resolve():
        return True
    last_step = _read_checkpoint(last).get("global_step", 0)
    return (ckpt or {}).get("global_step", 0) >= last_step


def check_checkpoint_dataset(ckpt_path, ckpt: dict, dataset: str) -> None:
    """Refuse to evaluate or resume a checkpoint on another dataset than it was trained on."""
    from lit_opt.errors import CheckpointError

    trained_on = ((ckpt.get("hyper_parameters") or {}).get("data_info") or {}).get("dataset")
    if trained_on and trained_on != dataset:
        raise CheckpointError(f"{ckpt_path} was trained on {trained_on}, but data.name is {dataset}; pass "
                              f"--data.name {trained_on}, or --config with the run's config.yaml")


def typed_model_keys(args) -> set[str]:
    """The model settings a person typed: `--model.KEY` flags and the model keys of every
    --config (a file or YAML text); for a config dict (prepare_fit), its model keys."""
    import yaml

    if isinstance(args, dict):
        return set(args.get("model") or {})
    keys: set[str] = set()
    args = list(args or [])
    for i, a in enumerate(args):
        if a.startswith("--model."):
            keys.add(a[len("--model."):].split("=", 1)[0].split(".", 1)[0])
            continue
        is_config = a in ("--config", "-c") or a.startswith("--config=")
        is_model = a == "--model" or a.startswith("--model=")  # a file or YAML text for the model
        if not (is_config or is_model) or ("=" not in a and i + 1 >= len(args)):
            continue
        value = a.split("=", 1)[1] if "=" in a else args[i + 1]
        try:
            text = Path(value).read_text() if Path(value).is_file() else value
            config = yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError):  # the parser reports a bad file itself
            continue
        model = config if is_model else (config.get("model") if isinstance(config, dict) else None)
        if isinstance(model, dict):
            keys |= set(model)
    return keys


def refuse_changed_model_settings(ckpt_path, ckpt: dict, asked: dict, typed: set[str]) -> None:
    """The model of a checkpoint is the checkpoint's: a model setting typed with --ckpt_path (a
    flag or in a --config) that differs from it would be silently ignored, so it is an error
    instead. Settings nobody typed come from the checkpoint."""
    from lit_opt.errors import ConfigError

    saved = ckpt.get("hyper_parameters") or {}
    changed = [f"model.{k}: {asked[k]!r} (the checkpoint has {saved[k]!r})" for k in asked
               if k in typed and k in saved and k != "data_info" and k not in RUNTIME_MODEL_OPTIONS
               and (asked[k] or None) != (saved[k] or None)]
    if changed:
        raise ConfigError(f"{ckpt_path} fixes the model and its optimizer, so these settings would be "
                          f"ignored: {'; '.join(changed)}. Leave them out to resume or evaluate, or "
                          f"start a new run (without --ckpt_path) to change them")


def finish_fit(trainer, model, datamodule, run_dir: Path, test: bool = True) -> dict:
    """After fit: test best.ckpt (if asked) and write summary.json; returns the summary."""
    import signal

    from lit_opt.errors import RunStopped
    from lit_opt.runs import stop_callback

    stop = stop_callback(trainer)
    if stop is not None and stop.signum == signal.SIGTERM:  # it came after the last batch
        exc = RunStopped(f"Stopped by SIGTERM after the last training step ({trainer.global_step}), "
                         f"before the test.", signum=signal.SIGTERM)
        exc.run_dir = run_dir
        raise exc
    best = trainer.checkpoint_callback
    summary = {"run_dir": str(run_dir), "epochs": trainer.current_epoch, "global_step": trainer.global_step,
               "best_val_acc": _num(best.best_model_score) if best else None}
    if "muon" in (model.optimizer_info.name, model.optimizer_hparams.get("base")):
        from lit_opt.optim.muon import describe  # which parameter Muon took, which AdamW

        summary["optimizer_parts"] = {name: part for name, _, part, _ in describe(model.net)}
    # best.ckpt needs validation; a run without it is tested at its last state.
    tested = best.best_model_path if best is not None and best.best_model_path else run_dir / "last.ckpt"
    if test and Path(tested).exists():
        results = trainer.test(model, datamodule=datamodule, ckpt_path=str(tested), weights_only=True,
                               verbose=trainer.progress_bar_callback is not None)
        summary["tested"] = Path(tested).name
        summary.update({k: _num(v) for k, v in results[0].items()})
    if trainer.is_global_zero:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _num(value) -> Optional[float]:
    if value is None:
        return None
    return round(float(value), 6)
