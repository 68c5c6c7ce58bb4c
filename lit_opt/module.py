"""ClassifierModule: a net + cross-entropy + regularization + metrics + optimizer.

    model = ClassifierModule(net="mlp", net_args={"hidden": "deep"}, optimizer="sgd", lr=0.1,
                             l2=1e-3, dropout=0.25, data_info=datamodule.info)

Every constructor argument is plain data and is saved in the checkpoint, so a checkpoint
rebuilds and feeds its model with nothing else (`lit_opt.inference.load`).

How a batch becomes an optimizer step (automatic, full-batch gd, SAM's closure) is the
job of a strategy chosen from the optimizer's registry entry (lit_opt/training_steps/); this
module keeps the net, the loss, the penalty and the metrics.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lit_opt import nets, optim
from lit_opt.declarations.datasets import DATASETS
from lit_opt.epoch_sums import TrainSums
from lit_opt.errors import ConfigError
from lit_opt.internals import batches_done_this_epoch, skip_module_setattr
from lit_opt.layers import start_epoch
from lit_opt.schedulers import build_scheduler, schedule_ended, validate_scheduler
from lit_opt.training_steps import strategy_for

CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout changes incompatibly


def default_data_info(name: str = "mnist") -> dict:
    spec = DATASETS[name]
    return {"dataset": name, "input_shape": list(spec.input_shape), "num_classes": len(spec.class_names),
            "class_names": list(spec.class_names), "mean": list(spec.mean), "std": list(spec.std)}


@skip_module_setattr
class ClassifierModule(L.LightningModule):
    """Image classifier for studying optimizers and regularization.

    Args:
        net: linear, mlp, dense784, lenet5, fast_cnn, cifar_resnet or airbench.
        net_args: the net's own options, e.g. {"hidden": [100, 100]} or {"pool": "avg"}.
        optimizer: a name from lit_opt.optim.names() (gd, sgd, momentum, nesterov, adam, ...).
        lr: learning rate; None: the optimizer's default.
        optimizer_args: the optimizer's other hyperparameters, e.g. {"betas": [0.9, 0.99]}.
        weight_decay: the optimizer's own weight decay (coupled for SGD/Adam, decoupled for AdamW);
            None: the optimizer's default (0.01 for AdamW and LAMB, 0 for the others).
        l2: lambda of the L2 penalty lambda * sum(w^2), added to the training loss.
        regularize_bias: apply l2 and weight_decay to biases and normalization parameters too.
        dropout: probability of dropout before each dense layer of the net.
        label_smoothing: cross-entropy label smoothing for training (validation/test use plain CE).
        early_stopping: stop after this many epochs without a better val/acc; None: never.
        scheduler: constant, step, cosine, onecycle or warmup_linear.
        scheduler_args: the scheduler's options (step: step_size, gamma; cosine: eta_min;
            onecycle: pct_start, cycle_momentum, div_factor, final_div_factor; warmup_linear:
            warmup, start_factor, end_factor).
        data_info: dataset name, input shape, class names and normalization statistics
            (linked from the data module by the CLI; recorded in the checkpoint).
        channels_last: store conv weights and inputs channels-last (NHWC), the layout fast
            convolution kernels want (oneDNN on CPU, tensor cores on GPU); None: on for nets
            with convolutions. Same values up to float rounding; a run-time choice that
            checkpoints do not impose on later commands.
        compile: run the net through torch.compile: true (inductor, the default backend) or
            a backend's name (e.g. "cudagraphs", "aot_eager"). The first steps are slow while
            it compiles; worth it for long runs of a fixed net. Run-time, like channels_last.
        norm_lr_scale: the learning rate of normalization layers' parameters (BatchNorm's
            shift) as a multiple of the others', their weight decay divided by it so that the
            decay per step is unchanged (airbench's "bias scaler", 64 there).
        tta: test-time augmentation for validation, test and predict (lit_opt/tta.py): 0 none,
            1 mirror, 2 mirror and one-pixel shifts. Run-time, like channels_last.
    """

    def __init__(self, net: str = "mlp", net_args: Optional[dict[str, Any]] = None, optimizer: str = "sgd",
                 lr: Optional[float] = None, optimizer_args: Optional[dict[str, Any]] = None,
                 weight_decay: Optional[float] = None, l2: float = 0.0, regularize_bias: bool = False,
                 dropout: float = 0.0, label_smoothing: float = 0.0, early_stopping: Optional[int] = None,
                 scheduler: str = "constant", scheduler_args: Optional[dict[str, Any]] = None,
                 data_info: Optional[dict[str, Any]] = None, channels_last: Optional[bool] = None,
                 compile: Union[bool, str] = False, norm_lr_scale: float = 1.0, tta: int = 0):
        super().__init__()
        # Validate everything before any data loads or any weight is allocated.
        if l2 < 0:
            raise ConfigError(f"model.l2 must be >= 0, got {l2}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        if early_stopping is not None and early_stopping < 1:
            raise ConfigError(f"model.early_stopping must be a patience >= 1 epoch (or null), got {early_stopping}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
        from lit_opt.tta import LEVELS

        if tta not in LEVELS:
            raise ConfigError(f"model.tta must be one of {', '.join(map(str, LEVELS))} (none, mirror, "
                              f"mirror and shifts), got {tta!r}")
        if not norm_lr_scale > 0:
            raise ConfigError(f"model.norm_lr_scale must be > 0, got {norm_lr_scale}")
        # Equal values pass: checkpoints from before this fix recorded both.
        if "dropout" in (net_args or {}) and dropout and net_args["dropout"] != dropout:
            raise ConfigError("set dropout once: model.dropout or model.net_args.dropout, not both")
        # A new name: save_hyperparameters records __init__'s arguments from its local
        # variables, and must record net_args as given, without the dropout added here.
        built_args = {**(net_args or {}), **({"dropout": dropout} if dropout else {})}
        opt_args = dict(optimizer_args or {})
        for key in ("lr", "weight_decay"):
            if key in opt_args:
                raise ConfigError(f"set {key} as model.{key}, not inside model.optimizer_args")
        if lr is not None:
            opt_args["lr"] = lr
        if weight_decay is not None:
            opt_args["weight_decay"] = weight_decay
        try:
            self.optimizer_hparams = optim.validate(optimizer, **opt_args)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.optimizer_info = optim.info(optimizer)
        self.scheduler_args = validate_scheduler(scheduler, scheduler_args or {})
        from lit_opt.eval_point import check_schedule

        check_schedule(optimizer, scheduler, self.optimizer_hparams)  # Schedule-Free wants none
        data_info = dict(data_info or default_data_info())
        self.save_hyperparameters()

        self.net = nets.build(net, data_info["input_shape"], data_info["num_classes"], **built_args)
        if "muon" in (self.optimizer_info.name, self.optimizer_hparams.get("base")):
            # Refuse a net without a hidden weight matrix here, before any data loads, with the
            # split the optimizer will make (lit_opt.optim.muon decides it in one place).
            from lit_opt.optim.muon import refuse_without_hidden_matrix

            refuse_without_hidden_matrix([tuple(p.shape) for p in self.net.parameters() if p.requires_grad])
        has_conv = any(isinstance(m, nn.Conv2d) for m in self.net.modules())
        self._channels_last = has_conv if channels_last is None else channels_last
        self._compile_backend = _compile_backend(compile)
        self._net_prepared = False
        self.class_names = list(data_info["class_names"])
        self.step_strategy = strategy_for(self.optimizer_info)
        self.automatic_optimization = self.step_strategy.automatic
        self.scheduler_interval: Optional[str] = None
        # Set by the learning-rate finder (lit_opt/lr_find.py): each parameter group's lr as a
        # multiple of model.lr, kept while the finder's scheduler sweeps the rate.
        self.lr_range_test: Optional[list[float]] = None
        self.decay_params = optim.decay_parameters(self.net.named_parameters(),
                                                    exclude_bias_and_norm=not regularize_bias)

        k = data_info["num_classes"]
        # Training statistics are summed per step in plain tensors (a few in-place adds) and
        # handed to these metric objects once per epoch, which reduce them across DDP
        # processes: updating torchmetrics objects every step cost a seventh of a small MLP's
        # step (docs/performance.md). The mean of per-epoch accuracies weighted
        # by sample count is the micro accuracy.
        self.train_acc = MeanMetric()
        self._train_sums = TrainSums()
        self.val_acc = MulticlassAccuracy(k, average="micro")
        self.test_acc = MulticlassAccuracy(k, average="micro")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in the checkpoint: a resumed run keeps its best so far
        # Means weighted by batch size, reduced across DDP processes once per epoch (in compute).
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.train_ce, self.train_l2 = MeanMetric(), MeanMetric()  # the two parts of train/loss
        self.val_confusion = MulticlassConfusionMatrix(k)
        self.test_confusion = MulticlassConfusionMatrix(k)
        # Latest confusion matrices (rows: true class, columns: predicted), for callbacks and files.
        self.val_confusion_matrix: Optional[torch.Tensor] = None
        self.test_confusion_matrix: Optional[torch.Tensor] = None
        # The latest training batch's loss (this process's), for every strategy: the one source
        # the live stream and the progress bar read.
        self.last_train_loss: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def setup(self, stage: str) -> None:
        # Before the optimizer exists and before any DDP wrapping; moving to a device later
        # keeps the layout.
        if self._net_prepared:
            return
        self._net_prepared = True
        if stage == "fit":
            self._init_layers_from_data()
        if self._channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self._compile_backend is not None:
            self.net.compile(backend=self._compile_backend)  # in place: state_dict keys unchanged

    # Layers set from training images (airbench's whitening, lit_opt/layers.py) see this many.
    DATA_INIT_IMAGES = 5000

    def _init_layers_from_data(self) -> None:
        """Before training starts (a resumed run's checkpoint then overwrites the weights)."""
        if not any(hasattr(m, "init_from_data") for m in self.net.modules()):
            return
        from lit_opt.data import normalize
        from lit_opt.layers import init_from_data

        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        train_set = getattr(datamodule, "train_set", None)
        if train_set is None:
            raise ConfigError(f"the net {self.hparams.net!r} sets a layer from the training images, "
                              f"and this run has none (a data module with a train_set)")
        info = self.hparams.data_info
        init_from_data(self.net, normalize(train_set[0][:self.DATA_INIT_IMAGES].cpu(), info["mean"], info["std"]))

    # --- losses ------------------------------------------------------------------------

    def l2_penalty(self) -> torch.Tensor:
        """lambda * sum of squared weights (biases and norm parameters excluded by default)."""
        if self.hparams.l2 == 0 or not self.decay_params:
            return torch.zeros((), device=self.device)
        return self.hparams.l2 * torch.stack([p.pow(2).sum() for p in self.decay_params]).sum()

    def with_penalty(self, ce: torch.Tensor) -> torch.Tensor:
        """The training loss: `ce` plus the L2 penalty, or `ce` itself when there is none (no
        zero tensor made and added every step)."""
        if self.hparams.l2 == 0 or not self.decay_params:
            return ce
        return ce + self.l2_penalty()

    def data_loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if y.numel() == 0:
            # A DDP rank's empty last batch: zero loss that still reaches every parameter, so
            # the gradient all-reduce every rank takes part in still happens.
            return logits.sum() * 0.0
        return F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing, reduction=reduction)

    # --- training ----------------------------------------------------------------------

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        return self.step_strategy.training_step(self, x, y, batch_idx)

    def record_train_batch(self, loss, ce, logits, y) -> None:
        """Every strategy calls this once per batch with the batch's loss (at the weights the
        batch was evaluated at) and its cross-entropy part."""
        n = len(y)
        if n:
            self.last_train_loss = loss.detach()
            self._train_sums.add(loss, ce, logits, y)
        # Epoch values: handed to the metric objects and the logger once, at the epoch's last
        # batch. They compute, and reduce across DDP processes, at the epoch's end. Every
        # process logs them here, even one whose last batch is empty, since that reduction is
        # collective.
        if batches_done_this_epoch(self.trainer) >= self.trainer.num_training_batches:
            sums = self._train_sums.take()
            count = max(sums["count"], 1)  # a process that saw no sample adds weight 0
            self.train_loss.update(sums["loss"] / count, weight=sums["count"])
            self.train_acc.update(sums["correct"] / count, weight=sums["count"])
            if self.hparams.l2:
                self.train_ce.update(sums["ce"] / count, weight=sums["count"])
                self.train_l2.update((sums["loss"] - sums["ce"]) / count, weight=sums["count"])
            self.log("train/loss_epoch", self.train_loss, on_step=False, on_epoch=True)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
            if self.hparams.l2:
                self.log("train/ce", self.train_ce, on_step=False, on_epoch=True)
                self.log("train/l2", self.train_l2, on_step=False, on_epoch=True)

    def on_train_epoch_start(self) -> None:
        start_epoch(self.net, self.current_epoch)  # layers that train only in some epochs (layers.py)

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            self.step_strategy.step_schedulers(self, "epoch")

    # --- evaluation --------------------------------------------------------------------

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for evaluation: with model.tta's views averaged (lit_opt/tta.py)."""
        from lit_opt.tta import tta_logits

        return tta_logits(self, x, self.hparams.get("tta", 0))

    def _eval_step(self, batch, prefix: str, acc, confusion) -> None:
        x, y = batch
        logits = self.eval_logits(x)
        mean_loss = getattr(self, f"{prefix}_loss")
        mean_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.log(f"{prefix}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=prefix == "val")
        acc.update(logits, y)
        confusion.update(logits, y)
        self.log(f"{prefix}/acc", acc, on_step=False, on_epoch=True, prog_bar=prefix == "val")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc, self.val_confusion)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc, self.test_confusion)

    def _log_confusion(self, prefix: str, confusion) -> torch.Tensor:
        cm = confusion.compute().cpu()
        confusion.reset()
        if prefix != "val":  # the test's per-class accuracies are in confusion_test.csv
            return cm
        per_class = per_class_accuracy(cm)
        for name, value in zip(self.class_names, per_class.tolist()):
            # Already reduced across processes (the confusion matrix syncs in compute).
            self.log(f"{prefix}/acc_class/{name}", value, on_step=False, on_epoch=True, rank_zero_only=True)
        return cm

    def on_validation_epoch_end(self) -> None:
        cm = self._log_confusion("val", self.val_confusion)
        if self.trainer.sanity_checking:
            return
        self.val_confusion_matrix = cm
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())

    def on_test_epoch_end(self) -> None:
        self.test_confusion_matrix = self._log_confusion("test", self.test_confusion)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.eval_logits(x).softmax(dim=1)

    # --- optimizer ---------------------------------------------------------------------

    def on_fit_start(self) -> None:
        check_precision(self.hparams.optimizer, str(self.trainer.precision))

    def configure_optimizers(self):
        hp = dict(self.optimizer_hparams)
        if optim.TOTAL_STEPS in hp.values():  # AdEMAMix's warm-ups "auto": the run's total steps
            try:
                hp = optim.fill_total_steps(hp, self.trainer.estimated_stepping_batches)
            except ValueError as exc:
                raise ConfigError(f"model.optimizer_args: {exc}") from None
        groups = optim.split_decay(self.net.named_parameters(), hp.pop("weight_decay"),
                                   exclude_bias_and_norm=not self.hparams.regularize_bias)
        scale = self.hparams.get("norm_lr_scale", 1.0)
        if scale != 1.0:
            groups = optim.scale_norm_groups(groups, self.net, scale, hp.get("lr"))
        opt = optim.build(self.hparams.optimizer, groups, **hp)
        steps_per_epoch = 1 if self.optimizer_info.full_batch else None
        scheduler, interval = build_scheduler(self.hparams.scheduler, self.scheduler_args, opt,
                                              self._trainer, steps_per_epoch)
        self.scheduler_interval = interval
        if self.lr_range_test is not None:  # the finder's scheduler steps every batch, whatever the strategy
            self.scheduler_interval = "step"
        if scheduler is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """Lightning's hook for every scheduler step (and the manual strategies' too): a
        schedule that has ended holds its final rate (a run given more epochs than planned)."""
        if schedule_ended(scheduler):
            return
        scheduler.step() if metric is None else scheduler.step(metric)

    def configure_callbacks(self):
        from lit_opt.eval_point import EvalPoint, needs_eval_point

        callbacks = []
        if self.hparams.early_stopping is not None:
            from lit_opt.callbacks import PatientEarlyStopping

            callbacks.append(PatientEarlyStopping(monitor="val/acc", mode="max", patience=self.hparams.early_stopping))
        given = any(isinstance(cb, EvalPoint) for cb in self.trainer.callbacks)  # a user's own settings win
        if needs_eval_point(self.hparams.optimizer, self.optimizer_hparams) and not given:
            callbacks.append(EvalPoint())  # evaluate and save at Schedule-Free's average x
        return callbacks

    # --- checkpoints -------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        from lit_opt import __version__

        checkpoint["lit_opt"] = {"format": CHECKPOINT_FORMAT, "version": __version__}
        # The global RNG drives dropout: saving it makes a resumed run continue exactly.
        checkpoint["lit_opt_rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["lit_opt_rng"]["cuda"] = torch.cuda.get_rng_state_all()
        # The epoch's training sums so far, so that a run resumed mid-epoch reports train/loss and
        # train/acc over the whole epoch, not just the part after the resume. Under DDP they are
        # summed over the processes here (every process saves) and restored on process 0 only.
        checkpoint["lit_opt_train_sums"] = self._train_sums.state(self._trainer)
        key = self.step_strategy.checkpoint_key
        if key is not None:  # the strategy's own state (gd's gradient summed so far mid-epoch)
            checkpoint[key] = self.step_strategy.state(self)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("lit_opt_rng")
        if rng is None or self._trainer is None:  # restore RNG only when resuming a fit
            return
        sums = checkpoint.get("lit_opt_train_sums")
        if sums is not None:
            self._train_sums.load(sums, first_process=self._trainer.global_rank == 0)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        key = self.step_strategy.checkpoint_key
        if key is not None and checkpoint.get(key) is not None:
            self.step_strategy.load_state(self, checkpoint[key])

    def on_train_start(self) -> None:
        self.step_strategy.on_train_start(self)
        start_epoch(self.net, self.current_epoch)  # a run resumed mid-epoch gets no on_train_epoch_start

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.lr_range_test is not None:
            _follow_range_test(self.optimizers(use_pl_optimizer=False), self.lr_schedulers(), self.lr_range_test)


def _follow_range_test(optimizer, scheduler, ratios: list[float]) -> None:
    """During the learning-rate finder: the finder's scheduler gives every group the same rate
    (model.lr's); each group takes its own multiple of it (Muon's AdamW part keeps its lr
    ratio). Schedule-Free steps only in train mode (lit_opt/eval_point.py sets it in a run)."""
    if hasattr(optimizer, "train"):
        optimizer.train()
    if scheduler is None:
        return
    for group, lr, ratio in zip(optimizer.param_groups, scheduler.get_last_lr(), ratios):
        group["lr"] = lr * ratio


def _compile_backend(compile: Union[bool, str]) -> Optional[str]:
    """None for no compilation, else a torch.compile backend's name (checked here, before any data loads)."""
    if compile is False or compile is None:
        return None
    if compile is True:
        return "inductor"
    if not isinstance(compile, str):
        raise ConfigError(f"model.compile must be true, false or a torch.compile backend's name, got {compile!r}")
    backends = torch.compiler.list_backends(exclude_tags=())
    if compile not in backends:
        raise ConfigError(f"model.compile: unknown torch.compile backend {compile!r}; "
                          f"choose one of: {', '.join(sorted(backends))}")
    return compile


def check_precision(optimizer: str, precision: str) -> None:
    """SAM needs its closure run inside step; fp16's gradient scaler steps without it."""
    if optim.info(optimizer).needs_closure and precision.startswith("16"):
        raise ConfigError(f"{optimizer} needs two gradient passes per step, which fp16 mixed precision "
                          f"cannot give it (its loss scaler steps without the closure); use "
                          f"--trainer.precision bf16-mixed or 32")


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Diagonal over row sums (rows are true classes); NaN for a class with no samples."""
    confusion = confusion.double()
    return confusion.diagonal() / confusion.sum(dim=1)
