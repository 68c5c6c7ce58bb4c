"""The live stream into TensorBoard: `tensorboard --logdir checkpoints` shows every run.

Lightning's TensorBoardLogger (lit_opt/runs.py's `run_logger`, beside the CSV logger) writes
what is logged through Lightning (losses, accuracies, epoch times, the logged step series)
and the model graph. This listener of the stream (lit_opt/stream.py) adds, through the same
logger's SummaryWriter (its public `experiment`), what Lightning's logging cannot carry:

- per-layer scalars, `layers/<series>/<layer>` (update/weight ratio, update, weight and
  gradient norms), on the rows that have the layer diagnostics (every `diagnostics.every`
  steps: a value per layer every step would cost more than the step on a small net);
- per-layer histograms, `histograms/<weights|grads|step_size>/<layer>`, written exactly as
  measured with `add_histogram_raw` (TensorBoard's histograms and distributions tabs);
- each epoch's validation confusion matrix and first-layer weights as images.

Steps are the ones Lightning gives its loggers (batches trained - 1), so every curve of a run
shares one x axis.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger

from lit_opt.stream import Listener

LAYER_SERIES = ("train/update_ratio", "train/update_norm", "train/weight_norm", "train/grad_norm")


class GraphSafeTensorBoard(TensorBoardLogger):
    """Lightning's TensorBoardLogger, whose model graph is the net's own (traced on one zero
    picture of the data's shape, in eval mode, by torch's `add_graph`). Lightning's version
    traces the LightningModule on `example_input_array` after the data module's batch hooks,
    which take (images, labels); and a net the tracer cannot follow gets a warning here, never
    a failed run."""

    def __init__(self, *args, graph: bool = True, **kwargs):
        super().__init__(*args, log_graph=False, **kwargs)
        self.graph = graph

    def log_graph(self, model, input_array=None) -> None:
        if not self.graph or getattr(model, "net", None) is None:
            return
        import torch

        shape = (getattr(model.hparams, "data_info", None) or {}).get("input_shape")
        try:
            x = input_array if input_array is not None else torch.zeros(1, *shape, device=model.device)
            with warnings.catch_warnings():  # torch 2.14 marks jit.trace, which add_graph uses, deprecated
                warnings.simplefilter("ignore", FutureWarning)
                self.experiment.add_graph(model.net, x)
        except Exception as exc:  # noqa: BLE001 - any tracer failure; the run matters more
            warnings.warn(f"TensorBoard: the model graph was not written ({type(exc).__name__}: {exc})")


class TensorBoardWriter(Listener):
    def __init__(self, logger):
        self.logger = logger  # lightning's TensorBoardLogger; its SummaryWriter is made on first use
        self._elements: dict[str, list[str]] = {}
        self._histograms: list[str] = []
        self._input_shape: Optional[list[int]] = None

    @property
    def writer(self):
        return self.logger.experiment

    def on_start(self, info: dict) -> None:
        self._elements = dict(info.get("elements") or {})
        kinds = info.get("kinds") or {}
        self._histograms = [n for n in info.get("series") or [] if kinds.get(n) == "histogram"]
        self._input_shape = info.get("input_shape")

    def on_steps(self, rows: list[dict]) -> None:
        # No flush here: the logger's own save (every log_every_n_steps) and each epoch's end
        # flush the file; a flush per stream flush cost the MLP ~2% of its epoch.
        for row in rows:
            step = row["batches"] - 1
            if row.get("train/update_norm") is not None:
                for series in LAYER_SERIES:
                    for layer, value in zip(self._elements.get(series, []), row.get(series) or []):
                        if value is not None and np.isfinite(value):
                            self.writer.add_scalar(f"layers/{series.split('/', 1)[1]}/{layer}", value, step)
            for series in self._histograms:
                for layer, hist in zip(self._elements.get(series, []), row.get(series) or []):
                    self._histogram(f"histograms/{series.split('/', 1)[1]}/{layer}", hist, step)

    def _histogram(self, tag: str, hist: list, step: int) -> None:
        lo, hi, total, squares, *counts = hist
        n = float(sum(counts))
        if not n or not np.isfinite([lo, hi]).all():
            return
        limits = np.linspace(lo, hi, len(counts) + 1)[1:]  # each bucket's right edge
        self.writer.add_histogram_raw(tag, min=lo, max=hi, num=n, sum=total, sum_squares=squares,
                                      bucket_limits=limits.tolist(), bucket_counts=list(counts), global_step=step)

    def on_epoch(self, row: dict) -> None:
        step = int(row.get("step") or 0)
        confusion = row.get("val/confusion")
        if confusion is not None:
            self.writer.add_image("confusion/val", confusion_image(np.asarray(confusion)), step, dataformats="HWC")
        weights = row.get("weights") or {}
        if weights and self._input_shape:
            first = next(iter(weights.values()))
            self.writer.add_image("weights/first_layer", weight_image(first, self._input_shape), step,
                                  dataformats="HWC")
        self.writer.flush()


def confusion_image(counts: np.ndarray, cell: int = 16) -> np.ndarray:
    """A confusion matrix (rows true, columns predicted) as an RGB image: each row's share,
    white (0) to dark blue (the whole row), `cell` pixels a class."""
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, float), where=totals > 0)
    rgb = np.stack([1 - 0.9 * share, 1 - 0.7 * share, 1 - 0.3 * share], axis=-1)
    return np.kron(rgb, np.ones((cell, cell, 1))).astype(np.float32)


def weight_image(weight: np.ndarray, input_shape, scale: int = 2, max_units: int = 100) -> np.ndarray:
    """The first layer's weights as tiles (a dense layer's units as input-sized pictures, a conv
    layer's filters), red positive, blue negative, white 0 and between tiles."""
    import torch

    from lit_opt.artifacts import mosaic, weight_tiles

    images = weight_tiles(torch.as_tensor(weight, dtype=torch.float32), input_shape)  # as weights.png
    grid, _ = mosaic(images[:max_units])
    v = grid.numpy()
    limit = np.nanmax(np.abs(v)) or 1.0
    v = np.nan_to_num(v / limit)
    rgb = np.stack([1 - np.clip(-v, 0, 1), 1 - np.abs(v), 1 - np.clip(v, 0, 1)], axis=-1)
    return np.kron(rgb, np.ones((scale, scale, 1))).astype(np.float32)
