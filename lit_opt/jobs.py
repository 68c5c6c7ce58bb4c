"""The Python API for a fit run: what the desktop app and the studies train through.

    job = prepare_fit({"model": {"optimizer": "adam"}, "data": {"name": "mnist"}})
    job = prepare_fit(["--model.optimizer", "adam", "--trainer.max_epochs", "3"])  # CLI-style options
    job = prepare_fit(config, listeners=[app])   # lit_opt.stream.Listener: every step and epoch
    summary = job.run()               # fit, then test best.ckpt; job.request_stop() from any thread
                                      # (and job.pause(), job.step_once(), job.resume(),
                                      # job.steer(lr_factor=0.5): lit_opt/steering.py)

A job is built by the same LitOptCLI as `python -m lit_opt fit` (the same parser, defaults,
checks and run folders), so a run from a program and one from the command line are the
same run. Failures are typed exceptions (lit_opt/errors.py): ConfigError before anything
trains, DivergenceError (diverged.json is written in the run folder), RunStopped (Stop,
Ctrl-C or SIGTERM: last.ckpt resumes it), StorageError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from lit_opt.lightning_cli import LitOptCLI, finish_fit
from lit_opt.runs import held_run_dirs, release_run_locks


class FitJob:
    """A fit run built from a config, ready to start: how the desktop app and studies train."""

    def __init__(self, cli: LitOptCLI, ckpt_path: Optional[str]):
        self.cli, self.ckpt_path = cli, ckpt_path
        self.trainer, self.model, self.datamodule = cli.trainer, cli.model, cli.datamodule
        self.run_dir: Path = cli.run_dir
        self.config: dict = _plain(cli)  # the resolved config, as config.yaml will hold it

    def request_stop(self) -> None:
        """Thread-safe: the run ends after the current batch, keeping a resumable last.ckpt."""
        from lit_opt.runs import stop_callback

        stop_callback(self.trainer).request_stop()

    def pause(self) -> None:
        """Thread-safe: training waits after the current batch (StopOnRequest.pause)."""
        from lit_opt.runs import stop_callback

        stop_callback(self.trainer).pause()

    def resume(self) -> None:
        from lit_opt.runs import stop_callback

        stop_callback(self.trainer).resume()

    def step_once(self) -> None:
        """While paused: exactly one more training batch, then wait again."""
        from lit_opt.runs import stop_callback

        stop_callback(self.trainer).step_once()

    def steer(self, **values) -> None:
        """Thread-safe: change lr_factor, momentum and/or weight_decay from the step the next
        training batch starts at (lit_opt/steering.py); recorded in config.yaml and checkpoints."""
        from lit_opt.steering import steering_callback

        steering_callback(self.trainer).request(**values)

    def steerable(self) -> dict[str, bool]:
        """Which of lr_factor, momentum, weight_decay this run's optimizer has (once it trains)."""
        from lit_opt.steering import steerable

        return steerable(self.trainer.optimizers[0]) if self.trainer.optimizers else {}

    def run(self) -> dict:
        try:
            self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.ckpt_path,
                             weights_only=True)
            return finish_fit(self.trainer, self.model, self.datamodule, self.run_dir,
                              bool(self.cli.config.run.test))
        finally:
            self.release()

    def release(self) -> None:
        """Let other processes train in this run's folder (a job that will not run must call it)."""
        release_run_locks(self.run_dir)


def prepare_fit(config: Union[dict, str, Path, list], ckpt_path: Optional[str] = None,
                listeners: tuple = ()) -> FitJob:
    """Build a fit run from a config dict, a YAML file (the CLI's format) or a list of CLI-style
    options (`--model.lr 0.1 ...`, `--config FILE` too); nothing runs yet.

    `listeners` (lit_opt.stream.Listener) receive the live stream: every training batch's
    series and every epoch's row. With `ckpt_path` inside a run folder, the run resumes there. Keys the run cannot take
    (the CLI's own `ckpt_path` and `weights_only`) are dropped; unknown keys are an error, as
    on the CLI. A config read from a run folder must be checked first (lit_opt/found_config.py).
    """
    import yaml
    from jsonargparse import ArgumentError

    from lit_opt.errors import ConfigError

    if isinstance(config, (str, Path)):
        config = yaml.safe_load(Path(config).read_text()) or {}
    if isinstance(config, dict):
        # Keys of a `fit` config.yaml that belong to the command, not the run: FitJob.run always
        # loads with weights_only=True and takes ckpt_path as its own argument.
        config = {k: v for k, v in config.items() if k not in ("ckpt_path", "subcommand", "weights_only")}
    else:
        config = [str(a) for a in config]

    held_before = held_run_dirs()
    try:
        return FitJob(LitOptCLI(args=config, run=False, prepare_fit=True, fit_ckpt_path=ckpt_path,
                                    listeners=tuple(listeners)), ckpt_path)
    except BaseException as exc:
        release_run_locks(new_since=held_before)  # the run folder may have been locked before the failure
        if isinstance(exc, ArgumentError):
            raise ConfigError(str(exc)) from None
        raise


def _plain(cli: LitOptCLI) -> dict:
    import yaml

    return yaml.safe_load(cli.parser.dump(cli.config, format="yaml"))


