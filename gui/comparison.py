"""What a comparison of runs draws, without Qt: labels from the settings that differ, runs
that differ only in their seed grouped into one mean +- std curve, the x axis in steps,
epochs, samples seen or wall time, and TensorBoard's smoothing.

    keys = differing_keys(records)                    # ["data.name", "model.lr"]
    label(rec, keys)                                  # "data.name=fashion_mnist model.lr=0.001"
    groups = seed_groups(records)                     # [[rec_seed0, rec_seed1, rec_seed2], [rec]]
    x = step_axis(rec, "epoch")                       # every step's x on the chosen axis
    smoothed = ema(values, 0.6)                       # TensorBoard's debiased moving average

Plain Python and numpy: the curves view (gui/views/curves.py) draws what this computes.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Iterable, Optional, Sequence

import numpy as np

# The x axes a comparison can use, and their axis titles.
AXES = {"step": "step", "epoch": "epoch", "samples": "samples seen", "time": "wall time (s)"}
SEED_KEY = "seed_everything"
# Settings that never tell two runs' training apart: where they ran and what they are called.
IGNORED = ("run.", "data.data_dir", "data.download", "trainer.enable_progress_bar", "trainer.logger",
           "trainer.enable_model_summary", "trainer.callbacks", "ckpt_path", "config", "model.data_info")
# A short name for the settings people compare most; the rest keep their config key.
SHORT = {"model.optimizer": "opt", "model.lr": "lr", "model.net": "net", "data.name": "data",
         "data.batch_size": "batch", "model.l2": "l2", "model.dropout": "dropout",
         "model.weight_decay": "wd", "trainer.max_epochs": "epochs", "model.scheduler": "schedule",
         SEED_KEY: "seed"}


def flat_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """{"model.lr": 0.001, "model.optimizer_args.rho": 0.05, ...}: nested settings flattened
    to dotted keys (a list stays one value, written compactly)."""
    flat: dict[str, Any] = {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{name}."))
        else:
            flat[name] = _compact(value)
    return flat


def short_name(key: str) -> str:
    """What a label calls a setting: "lr", "data", "hidden" (the last part of its key)."""
    return SHORT.get(key) or key.rsplit(".", 1)[-1]


def _compact(value: Any) -> Any:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_compact(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(_compact(v)) for v in value) + "]"
    return value


def _settings(rec) -> dict[str, Any]:
    flat = flat_config(rec.config)
    # The learning rate as the run used it (the optimizer's default when the config has none).
    flat["model.lr"] = rec.lr
    flat.setdefault("model.optimizer", rec.optimizer)
    flat.setdefault("model.net", rec.net)
    flat.setdefault("data.name", rec.dataset)
    return {k: v for k, v in flat.items() if not k.startswith(IGNORED)}


def differing_keys(records: Sequence, include_seed: bool = True) -> list[str]:
    """The settings whose value is not the same in every run, in the config's order (model,
    data, trainer, ...); the seed last."""
    if len(records) < 2:
        return []
    settings = [_settings(r) for r in records]
    keys: list[str] = []
    for s in settings:
        keys += [k for k in s if k not in keys]
    differing = [k for k in keys if len({_hashable(s.get(k)) for s in settings}) > 1]
    differing.sort(key=lambda k: (k == SEED_KEY, _section_order(k)))
    return [k for k in differing if include_seed or k != SEED_KEY]


def _section_order(key: str) -> int:
    for i, section in enumerate(("model.optimizer", "model.lr", "model.", "data.", "trainer.")):
        if key.startswith(section):
            return i
    return 9


def _hashable(value: Any) -> Any:
    return repr(value)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def label(rec, keys: Iterable[str]) -> str:
    """The run's values of `keys`, "opt=adam lr=0.001 data=fashion_mnist"; the run's name when
    no key differs (two runs with the same settings)."""
    settings = _settings(rec)
    seed = rec.config.get(SEED_KEY)
    parts = [f"{short_name(k)}={_format(settings.get(k) if k != SEED_KEY else seed)}" for k in keys]
    return " ".join(parts) if parts else rec.name


def seed_groups(records: Sequence) -> list[list]:
    """The runs, grouped where they differ only in their seed (in the order first seen). Runs
    with the same settings and the same seed are not seed replicates: each stays on its own."""
    groups: dict[str, list] = {}
    for rec in records:
        settings = _settings(rec)
        settings.pop(SEED_KEY, None)
        groups.setdefault(repr(sorted(settings.items(), key=lambda kv: kv[0])), []).append(rec)
    out: list[list] = []
    for group in groups.values():
        seeds = [r.config.get(SEED_KEY) for r in group]
        out += [group] if len(set(map(repr, seeds))) == len(seeds) else [[r] for r in group]
    return out


def group_label(group: Sequence, keys: Iterable[str]) -> str:
    """A group's label: its shared values of `keys` (the seed left out), and "n seeds"."""
    keys = [k for k in keys if k != SEED_KEY]
    if len(group) == 1:
        return label(group[0], keys)
    # no other setting differs: say what the runs are (optimizer, lr, net, data)
    text = label(group[0], keys) if keys else group[0].label
    return f"{text} ({len(group)} seeds)"


# --- the x axis --------------------------------------------------------------------------------

def batches_per_epoch(rec) -> Optional[int]:
    """Training batches in one epoch: from the first finished epoch's step, else the batch
    numbers seen so far in a run's first epoch (None before any)."""
    steps = [e.get("step") for e in rec.epochs if e.get("epoch") == 0 and e.get("step")]
    if steps:
        return int(steps[0])
    if len(rec.step_batch):
        return int(max(rec.step_batch)) + 1
    return None


def samples_per_epoch(rec) -> Optional[int]:
    """Training images in one epoch (samples/s x seconds of a finished epoch, exact to rounding)."""
    for e in rec.epochs:
        sps, seconds = e.get("train/samples_per_sec"), e.get("train/epoch_time")
        if sps and seconds:
            return int(round(float(sps) * float(seconds)))
    return None


def step_axis(rec, axis: str) -> np.ndarray:
    """Each recorded training step's x on `axis`: the step number (1-based batches trained),
    the fraction of epochs done, the training images seen, or the seconds since training began."""
    x = np.fromiter(rec.step_x, float, len(rec.step_x))
    if axis == "step":
        return x
    n = len(x)
    epoch = np.fromiter(rec.step_epoch, float, n)
    batch = np.fromiter(rec.step_batch, float, n)
    if axis == "epoch":
        nb = batches_per_epoch(rec) or 1
        return epoch + (batch + 1) / nb
    if axis == "samples":
        size = rec.batch_size
        per_epoch = samples_per_epoch(rec)
        seen = (batch + 1) * size
        if per_epoch:
            seen = np.minimum(seen, per_epoch) + epoch * per_epoch
        else:
            seen = x * size
        return seen
    if axis == "time":
        return np.fromiter(rec.step_time, float, n)
    raise ValueError(f"unknown x axis {axis!r}; choose one of {', '.join(AXES)}")


def epoch_axis(rec, axis: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, values) of an epoch metric on `axis`, each point at its epoch's end (epochs 1-based)."""
    rows = [e for e in rec.epochs if e.get(key) is not None and e.get("epoch") is not None]
    values = np.array([float(e[key]) for e in rows], float)
    epochs = np.array([int(e["epoch"]) for e in rows], int)
    if axis == "epoch":
        return epochs + 1.0, values
    ends = np.array([float(e.get("step") or 0) for e in rows], float)
    if axis == "step":
        return ends, values
    if axis == "samples":
        per_epoch = samples_per_epoch(rec)
        if per_epoch:
            return (epochs + 1.0) * per_epoch, values
        return ends * rec.batch_size, values
    if axis == "time":
        steps = np.fromiter(rec.step_x, float, len(rec.step_x))
        times = np.fromiter(rec.step_time, float, len(rec.step_time))
        if not len(steps):
            return np.array([], float), np.array([], float)
        # the time of the epoch's last recorded step
        idx = np.clip(np.searchsorted(steps, ends, side="right") - 1, 0, len(steps) - 1)
        return times[idx], values
    raise ValueError(f"unknown x axis {axis!r}; choose one of {', '.join(AXES)}")


# --- smoothing and bands ----------------------------------------------------------------------

class Smoother:
    """TensorBoard's scalar smoothing, kept up to date as a series grows: an exponential
    moving average debiased by 1 - weight^n (n: finite values so far); a non-finite value is
    passed through and skipped. Weight 0 leaves the values as they are."""

    def __init__(self, weight: float):
        if not 0.0 <= weight < 1.0:
            raise ValueError(f"smoothing weight must be in [0, 1); got {weight}")
        self.weight = weight
        self._last, self._n = 0.0, 0
        self.values = array("d")

    def extend(self, series: Sequence[float]) -> np.ndarray:
        """Smooth the values of `series` not seen yet (it only ever grows); all smoothed values."""
        w = self.weight
        for v in series[len(self.values):]:
            v = float(v)
            if math.isfinite(v):
                self._last = self._last * w + (1.0 - w) * v
                self._n += 1
                v = self._last / (1.0 - w ** self._n)
            self.values.append(v)
        # a copy: a numpy view of the array would stop it from growing (BufferError)
        return np.array(self.values, float)


def ema(values: Sequence[float], weight: float) -> np.ndarray:
    """TensorBoard's smoothing of a whole series (Smoother, in one go)."""
    return Smoother(weight).extend(values)


def mean_band(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, std) of several (x, y) curves over the x values they all reach: each is
    interpolated onto the first curve's x there. The std is the sample std (n - 1), as the
    study reports compute it (lit_opt/studies/results.py); 0 for a single curve."""
    curves = [(np.asarray(x, float), np.asarray(y, float)) for x, y in curves if len(x)]
    if not curves:
        return np.array([]), np.array([]), np.array([])
    end = min(x[-1] for x, _ in curves)
    x0 = curves[0][0]
    x0 = x0[x0 <= end]
    ys = np.vstack([np.interp(x0, x, y) for x, y in curves])
    std = ys.std(axis=0, ddof=1) if len(ys) > 1 else np.zeros(len(x0))
    return x0, ys.mean(axis=0), std


def steering_text(change: dict) -> str:
    """A steering change as the marker on the curves says it: "lr x0.5, momentum 0.8"."""
    parts = []
    if change.get("lr_factor") is not None:
        parts.append(f"lr x{change['lr_factor']:.3g}")
    if change.get("momentum") is not None:
        parts.append(f"momentum {change['momentum']:.3g}")
    if change.get("weight_decay") is not None:
        parts.append(f"wd {change['weight_decay']:.3g}")
    return ", ".join(parts)


def steering_marks(rec, axis: str) -> list[tuple[float, str]]:
    """(x, text) of each steering change on `axis`: at the first recorded batch that stepped
    with it (the change at optimizer step s is first used by batch s + 1; exact for one step
    per batch, which is every strategy but gd's one step per epoch); changes past the
    recorded batches are not drawn yet."""
    changes = rec.steering
    if not changes or not len(rec.step_x):
        return []
    xs = step_axis(rec, axis)
    batches = np.fromiter(rec.step_x, float, len(rec.step_x))
    marks = []
    for change in changes:
        i = int(np.searchsorted(batches, change["step"] + 1, side="left"))
        if i < len(xs):
            marks.append((float(xs[i]), steering_text(change)))
    return marks
