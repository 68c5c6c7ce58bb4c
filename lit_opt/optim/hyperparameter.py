"""Typed hyperparameter fields and optimizer entries: the schema the registry is made of.

A `Hyperparameter` knows its type, default, range and help line, and `check()`
turns a user's value (from the CLI, a YAML file or a GUI form) into a clean
Python value or raises a ValueError that names the field and the allowed range.
An `OptimizerInfo` is one registry entry. Neither imports torch: validation runs
before any data or model is loaded, so it must be cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Hyperparameter:
    """One tunable setting of an optimizer.

    `low`/`high` bound a number (each element for a tuple such as `betas`);
    None means unbounded on that side. By default `low` is inclusive and `high`
    exclusive (`[low, high)`); `low_inclusive`/`high_inclusive` say otherwise,
    e.g. lr is `(0, inf)`. Infinity itself is refused unless `high=math.inf` with
    `high_inclusive=True` (`[1, inf]`: Prodigy's growth_rate, whose default is inf). `choices` lists the allowed strings of a str field.
    `log_scale` tells a GUI to use a logarithmic slider (lr-like fields).
    `words` are strings a number field also takes, returned as the lowercase word: "auto" in
    AdEMAMix's warm-ups is the run's total number of steps, filled in from the trainer
    (registry.TOTAL_STEPS, registry.fill_total_steps).
    """

    name: str
    type: type  # float, int, bool, str, or tuple (a fixed-length tuple of floats, e.g. betas)
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    help: str = ""
    log_scale: bool = False
    low_inclusive: bool = True
    high_inclusive: bool = False
    words: tuple[str, ...] = ()

    @property
    def range_text(self) -> str:
        """The allowed values in interval or list notation, as error messages print them."""
        if self.choices is not None:
            return "one of: " + ", ".join(str(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        if self.low is None and self.high is None:
            return "any number"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "[" if self.low is not None and self.low_inclusive else "("
        right = "]" if self.high is not None and self.high_inclusive else ")"
        return f"{left}{lo}, {hi}{right}" + "".join(f" or {w}" for w in self.words)

    def check(self, value: Any, optimizer: str = "") -> Any:
        """Return `value` converted to this field's type; raise ValueError if it is not allowed.

        Numbers may arrive as strings (YAML reads `1e-3` as a string), tuples as
        lists or "0.9,0.999". The message names `optimizer.field` and the range.
        """
        where = f"{optimizer}: {self.name}" if optimizer else self.name

        def fail(reason: str) -> ValueError:
            return ValueError(f"{where} must be {reason}; got {value!r}")

        if self.type is tuple:
            items = value
            if isinstance(items, str):
                items = [s for s in items.strip("()[] ").split(",") if s.strip()]
            if not isinstance(items, (list, tuple)) or len(items) != len(self.default):
                raise fail(f"{len(self.default)} numbers, each in {self.range_text}")
            out = []
            for item in items:
                number = _to_float(item)
                if number is None or not self._in_range(number):
                    raise fail(f"{len(self.default)} numbers, each in {self.range_text}")
                out.append(number)
            return tuple(out)
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise fail(self.range_text)
        if self.type is str:
            if not isinstance(value, str):
                raise fail(f"a string, {self.range_text}" if self.choices else "a string")
            text = value.strip().lower() if self.choices else value
            if self.choices is not None and text not in self.choices:
                raise fail(self.range_text)
            return text
        if self.words and isinstance(value, str) and value.strip().lower() in self.words:
            return value.strip().lower()
        if self.type is int:
            number = _to_float(value)
            if number is None or not number.is_integer() or not self._in_range(number):
                raise fail(f"an integer in {self.range_text}")
            return int(number)
        number = _to_float(value)
        if number is None or not self._in_range(number):
            raise fail(f"a number in {self.range_text}")
        return number

    def _in_range(self, number: float) -> bool:
        if math.isnan(number):
            return False
        if math.isinf(number):  # only where the range says so: high=math.inf, high_inclusive
            return number > 0 and self.high == math.inf and self.high_inclusive
        if self.low is not None:
            if number < self.low or (number == self.low and not self.low_inclusive):
                return False
        if self.high is not None:
            if number > self.high or (number == self.high and not self.high_inclusive):
                return False
        return True


def _to_float(value: Any) -> float | None:
    """A float from an int, float or numeric string; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    try:  # numpy and 0-d torch scalars
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class OptimizerInfo:
    """One registry entry: how to build an optimizer and what may be tuned.

    `factory(params, **validated)` returns a torch Optimizer. `full_batch` marks
    `gd` (the training loop steps once per epoch on the whole-set gradient);
    `needs_closure` marks `sam` (its step recomputes the loss at a perturbed point).
    `needs_matrices` marks optimizers made for a net's weight matrices (muon refuses a net
    without a hidden one): the toy functions' single coordinate vector has none, so the
    playground leaves them out.
    `eval_point` marks optimizers that evaluate at another point than they train at
    (Schedule-Free: `optimizer.eval()` moves the weights to the average x, `optimizer.train()`
    back to the gradient point y); lit_opt.eval_point.EvalPoint switches them around
    validation, test and checkpoints.
    `resolve`, when set, replaces the plain schema check (SAM validates its extra
    keys against its base optimizer's schema).
    """

    name: str
    description: str
    factory: Callable[..., Any]
    hyperparameters: tuple[Hyperparameter, ...]
    full_batch: bool = False
    needs_closure: bool = False
    source: str = ""
    needs_matrices: bool = False
    eval_point: bool = False
    resolve: Callable[[dict], dict] | None = field(default=None, repr=False, compare=False)

    def hyperparameter(self, name: str) -> Hyperparameter:
        """The hyperparameter called `name` (KeyError if this optimizer has none)."""
        for hp in self.hyperparameters:
            if hp.name == name:
                return hp
        raise KeyError(name)


def reject_unknown(where: str, given: dict, fields: tuple[Hyperparameter, ...]) -> None:
    """ValueError naming the keys of `given` that none of `fields` has, and the allowed ones."""
    allowed = [hp.name for hp in fields]
    unknown = [key for key in given if key not in allowed]
    if unknown:
        raise ValueError(f"{where}: unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(allowed)}")
