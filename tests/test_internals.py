"""Each private Lightning/torch attribute lit_opt reads (lit_opt/internals.py, the only place
that reads any) still gives what lit_opt needs. A release that moves or changes one fails
here, loudly, instead of a resume silently keeping log rows past its checkpoint, a run
logging its epoch values at the wrong batch, or every step getting slower."""

from __future__ import annotations

import ast
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lit_opt import internals

ROOT = Path(__file__).resolve().parents[1]


class _Watch(Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append((internals.batches_that_stepped(trainer), internals.batches_done_this_epoch(trainer),
                          batch_idx))


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.names = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(12, 3))
        return torch.utils.data.DataLoader(data, batch_size=4)


def test_the_batch_counters_count_batches_as_lit_opt_reads_them():
    watch = _Watch()
    trainer = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[watch])
    assert internals.batches_that_stepped(trainer) == 0
    trainer.fit(_Tiny())
    # At each batch's end: the batches stepped before it (the step Lightning logs it at; the
    # count moves on after the hooks), and the batches of this epoch started so far (3 an epoch).
    assert watch.seen == [(0, 1, 0), (1, 2, 1), (2, 3, 2), (3, 1, 0), (4, 2, 1), (5, 3, 2)]


def test_per_tensor_norms_are_each_tensors_two_norm():
    tensors = [torch.randn(5, 7), torch.randn(3), torch.zeros(2, 2)]
    norms = internals.per_tensor_norms(tensors)
    assert [float(n) for n in norms] == [float(torch.linalg.vector_norm(t)) for t in tensors]


def test_the_hook_name_lightning_sets_still_goes_through_the_shortcut():
    """Lightning still names the running hook `_current_fx_name` on the module (or the
    shortcut in ClassifierModule would speed up nothing)."""
    source = Path(L.pytorch.trainer.call.__file__).read_text()
    assert "_current_fx_name" in source
    from lit_opt.module import ClassifierModule

    model = ClassifierModule(net="linear")
    model._current_fx_name = "training_step"
    assert model.__dict__["_current_fx_name"] == "training_step"  # stored as a plain attribute


def test_no_other_module_reads_a_private_attribute_of_lightning_or_torch():
    """Names like `trainer.fit_loop.epoch_loop._x` or `torch._foreach_x` appear only in
    lit_opt/internals.py (the module's own underscore names and Python's dunders are fine)."""
    offenders = []
    for path in sorted((ROOT / "lit_opt").rglob("*.py")) + sorted((ROOT / "gui").rglob("*.py")):
        if path.name == "internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = ast.unparse(node.value)
                if base.startswith(("torch", "trainer", "L.", "lightning", "pl_module.trainer")) or \
                        base.endswith(("fit_loop", "epoch_loop", "_logger_connector")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {base}.{node.attr}")
    assert not offenders, offenders


class _Counts(Callback):
    def __init__(self):
        self.ends = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends += 1


def test_hooks_a_callback_does_not_override_are_skipped_and_its_own_still_run():
    """skip_unused_hooks leaves Lightning nothing to call for the base class's empty per-batch
    hooks (a release that calls every attribute would fail here with 'NoneType is not
    callable'), while the hooks a callback overrides still run every batch."""
    counts = _Counts()
    internals.skip_unused_hooks([counts])
    assert counts.on_train_batch_start is None and counts.on_before_backward is None
    assert callable(counts.on_train_batch_end)  # overridden: untouched
    trainer = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[counts])
    trainer.fit(_Tiny())
    assert counts.ends == 6  # 3 batches x 2 epochs
    assert type(counts).on_train_batch_start is Callback.on_train_batch_start  # the class is unchanged


def test_every_callback_of_a_fit_skips_the_hooks_it_does_not_use(tmp_path):
    """The CLI prunes the whole list it builds: lit_opt's callbacks, both checkpoints, the bar."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lit_opt.jobs import prepare_fit
    from lit_opt.stream import LiveStream

    job = prepare_fit({"trainer": {"max_epochs": 1, "accelerator": "cpu"}, "model": {"net": "linear"},
                       "data": {"name": "mnist", "data_dir": str(tmp_path), "download": False},
                       "run": {"root": str(tmp_path)}})
    try:
        callbacks = job.trainer.callbacks
        stream = next(cb for cb in callbacks if isinstance(cb, LiveStream))
        assert stream.on_before_backward is None and callable(stream.on_train_batch_end)
        checkpoints = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
        assert len(checkpoints) == 2 and all(cb.on_train_batch_start is None for cb in checkpoints)
        skipped = sum(getattr(cb, name) is None for cb in callbacks for name in internals.PER_BATCH_HOOKS)
        assert skipped >= 5 * len(callbacks)  # most hooks of most callbacks
    finally:
        job.release()
