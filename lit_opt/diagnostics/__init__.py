"""The live stream's sources (lit_opt/stream.py): what is measured after every training batch.

A new live series is a Source in a file of its own here, plus one line in SOURCES;
docs/contributing.md walks through one (the per-layer gradient norms).
"""

from __future__ import annotations

from typing import Optional

from lit_opt.diagnostics.basics import EstimatedStepSize, LearningRate, Momentum, StepLoss
from lit_opt.diagnostics.grad_norms import GradNorms
from lit_opt.diagnostics.layer_updates import EVERY, HISTOGRAMS_EVERY, LayerUpdates
from lit_opt.diagnostics.sharpness import Sharpness

SOURCES = (StepLoss, LearningRate, Momentum, EstimatedStepSize, GradNorms, LayerUpdates, Sharpness)


def default_sources(options: Optional[dict] = None) -> list:
    """Every source, configured by the run's `diagnostics` options (`--diagnostics.every`,
    `--diagnostics.histograms_every`, `--diagnostics.sharpness_every`: their cadences in
    optimizer steps, 0 = off; `--diagnostics.sharpness_samples`)."""
    options = dict(options or {})
    for key in ("every", "histograms_every", "sharpness_every", "sharpness_samples"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            from lit_opt.errors import ConfigError

            raise ConfigError(f"diagnostics.{key} must be a whole number >= 0 (0: off), not {value!r}")
    sources = []
    for cls in SOURCES:
        if cls is LayerUpdates:
            sources.append(LayerUpdates(every=options.get("every", EVERY),
                                        histograms_every=options.get("histograms_every", HISTOGRAMS_EVERY)))
        elif cls is Sharpness:
            sources.append(Sharpness(every=options.get("sharpness_every") or 0,
                                     samples=options.get("sharpness_samples") or 1000))
        else:
            sources.append(cls())
    return sources


def all_series() -> list:
    return [s for cls in SOURCES for s in cls.series]
