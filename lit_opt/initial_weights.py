"""Keep a run's initial weights in its folder, as `init.pt`: where a loss landscape's line
from the start of training to a checkpoint begins (`python -m lit_opt landscape`).

    callbacks.append(InitialWeights(run_dir))      # beside RunFiles in runs.run_callbacks

The file is written once, when a fresh run starts training (not on a resume: the weights
then are not the initial ones), and never over an existing file. It has a checkpoint's
layout (state_dict with the net's weights under "net.", hyper_parameters, the lit_opt
record), so `lit_opt.inference.load` reads it like any checkpoint, weights only. It is
written to a temporary name and renamed, so a crash never leaves a half-written init.pt.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

FILE_NAME = "init.pt"


def initial_weights_path(run_dir) -> Path:
    return Path(run_dir) / FILE_NAME


def write_initial_weights(pl_module, path: Path) -> bool:
    """Save the module's net as a weights-only checkpoint at `path` unless the file exists;
    True when it wrote one."""
    from lit_opt import __version__
    from lit_opt.module import CHECKPOINT_FORMAT

    path = Path(path)
    if path.exists():
        return False
    checkpoint = {
        "state_dict": {f"net.{k}": v.detach().cpu().clone() for k, v in pl_module.net.state_dict().items()},
        "hyper_parameters": dict(pl_module.hparams),
        "lit_opt": {"format": CHECKPOINT_FORMAT, "version": __version__, "initial_weights": True},
        "global_step": 0,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(checkpoint, tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename: a power cut cannot leave it empty
            os.fsync(f.fileno())
        if path.exists():  # written meanwhile (another process): keep the first
            return False
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


class InitialWeights(Callback):
    """Writes RUN/init.pt when a fresh run starts training (process 0 only)."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)

    def on_train_start(self, trainer, pl_module) -> None:
        # By on_train_start a resumed run has restored its step; a fresh run is at step 0
        # and was given no checkpoint to resume from.
        fresh = trainer.global_step == 0 and trainer.current_epoch == 0 and not trainer.ckpt_path
        if fresh and trainer.is_global_zero:
            write_initial_weights(pl_module, initial_weights_path(self.run_dir))
