"""The live stream's sources (lit_opt/stream.py): what is measured after every training batch.

A new live series is a Source in a file of its own here, plus one line in SOURCES;
docs/contributing.md walks through one (the per-layer gradient norms).
"""

from __future__ import annotations

from lit_opt.diagnostics.basics import EstimatedStepSize, LearningRate, StepLoss
from lit_opt.diagnostics.grad_norms import GradNorms

SOURCES = (StepLoss, LearningRate, EstimatedStepSize, GradNorms)


def default_sources() -> list:
    return [cls() for cls in SOURCES]


def all_series() -> list:
    return [s for cls in SOURCES for s in cls.series]
