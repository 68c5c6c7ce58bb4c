"""Callbacks the GUI tests put in a run's config (trainer.callbacks)."""

import time

from lightning.pytorch.callbacks import Callback


class Pace(Callback):
    """Sleep after every training batch, so a tiny run lasts long enough to stop mid-epoch.
    It changes no number: a paced run and an unpaced one reach the same weights."""

    def __init__(self, seconds: float = 0.02):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)
