"""Every run writes TensorBoard event files (RUN/tensorboard/) that tensorboard's own reader
reads back with the losses, per-layer diagnostics, histograms, images and the model graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_opt.jobs import prepare_fit


def test_a_runs_event_files_hold_scalars_layers_histograms_images_and_the_graph(real_data, tmp_path):
    config = {"seed_everything": 0,
              "trainer": {"max_epochs": 2, "accelerator": "cpu", "enable_progress_bar": False,
                          "log_every_n_steps": 2},
              "model": {"net": "lenet5", "optimizer": "adam"},
              "data": {"name": "mnist", "data_dir": str(real_data), "train_size": 400, "val_size": 100,
                       "batch_size": 100},
              "diagnostics": {"every": 2, "histograms_every": 4},
              "run": {"root": str(tmp_path), "name": "r", "test": False}}
    prepare_fit(config).run()
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"),
                              size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    layers = ["conv 6@5x5", "conv 16@5x5", "dense 400->120", "dense 120->84", "dense 84->10"]
    assert {"train/loss_step", "val/acc", "val/loss", "train/lr"} <= set(tags["scalars"])
    for series in ("update_ratio", "update_norm", "weight_norm", "grad_norm"):
        assert {f"layers/{series}/{layer}" for layer in layers} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("layers/update_ratio/conv 6@5x5")] == [0, 2, 4, 6]  # every 2 steps
    assert {f"histograms/{k}/{layer}" for k in ("weights", "grads", "step_size") for layer in layers} <= set(
        tags["histograms"])
    first = events.Histograms("histograms/weights/conv 6@5x5")
    assert [h.step for h in first] == [0, 4]
    assert first[0].histogram_value.num == 6 * 5 * 5 + 6  # every parameter of the layer counted
    assert {"confusion/val", "weights/first_layer"} <= set(tags["images"])
    assert len(events.Images("confusion/val")) == 2  # one per epoch
    assert tags["graph"] is True
    steps = [e.step for e in events.Scalars("train/loss_step")]
    assert steps == list(range(1, 8, 2))  # every log_every_n_steps batches, Lightning's step numbers


def test_the_confusion_image_shades_each_rows_share():
    from lit_opt.tensorboard_files import confusion_image

    image = confusion_image(np.array([[3, 1], [0, 0]]), cell=1)
    assert image.shape == (2, 2, 3)
    assert image[0, 0] == pytest.approx([1 - 0.9 * 0.75, 1 - 0.7 * 0.75, 1 - 0.3 * 0.75])
    assert image[1].tolist() == [[1, 1, 1], [1, 1, 1]]  # a class never seen: white, not NaN


def test_a_resumed_run_shows_each_step_once_in_tensorboard(real_data, tmp_path):
    """A run that crashed in its second epoch (its events logged up to the crash, its last.ckpt
    from the first epoch's end) resumes from last.ckpt: the steps logged after the checkpoint
    are purged and logged again, so TensorBoard reads each step once, in order, as steps.csv."""
    from lit_opt.cli import main

    args = ["fit", "--data.data_dir", str(real_data), "--data.train_size", "600", "--data.val_size", "100",
            "--data.batch_size", "100", "--model.net_args", "{hidden: shallow}", "--trainer.max_epochs", "2",
            "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
            "--diagnostics.every", "1", "--run.root", str(tmp_path), "--run.name", "r", "--run.test", "false"]
    crash = "[{class_path: tests.helpers.CrashAtStep, init_args: {step: 9}}]"
    with pytest.raises(RuntimeError, match="crash at step 9"):
        main([*args, "--trainer.callbacks", crash])
    run = tmp_path / "r"
    assert torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 6
    logged = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    logged.Reload()
    assert [e.step for e in logged.Scalars("train/loss_step")][-1] >= 6  # logged past the checkpoint (steps 0-5)
    assert main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "last.ckpt"),
                 "--trainer.callbacks", "[]"]) == 0
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    for tag in ("train/loss_step", "layers/update_ratio/dense 784->100"):
        steps = [e.step for e in events.Scalars(tag)]
        assert steps == list(range(12)), tag  # 12 batches, each once, in order
