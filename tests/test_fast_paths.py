"""The speed options change how training runs, never what it computes: channels-last conv
nets, torch.compile, and the progress bar's redraw rate."""

from __future__ import annotations

import json
import re

import pytest
import torch

from lit_opt import inference
from lit_opt.cli import main
from lit_opt.data import ClassificationDataModule
from lit_opt.errors import ConfigError
from lit_opt.module import ClassifierModule
from tests.conftest import quiet_trainer
from tests.test_data import make_dataset


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    make_dataset("mnist", tmp_path, monkeypatch)  # 60 training images, 20 test
    return tmp_path


def _train(root, seed: int = 0, **model_args) -> ClassifierModule:
    """Two epochs of momentum SGD on 50 images; the same initial weights for the same seed."""
    dm = ClassificationDataModule("mnist", data_dir=str(root), val_size=10, batch_size=16, shuffle_seed=seed)
    torch.manual_seed(seed)
    model = ClassifierModule(optimizer="momentum", lr=0.05, data_info=dm.info, **model_args)
    quiet_trainer(max_epochs=2, limit_val_batches=0).fit(model, datamodule=dm)
    return model


def _assert_same_weights(a: ClassifierModule, b: ClassifierModule, atol: float) -> None:
    for (name, p), q in zip(a.net.named_parameters(), b.net.parameters()):
        torch.testing.assert_close(p.detach().contiguous(), q.detach().contiguous(), atol=atol, rtol=1e-4,
                                   msg=name)


def test_conv_nets_train_channels_last_by_default_and_reach_the_same_weights(tiny_mnist):
    fast = _train(tiny_mnist, net="lenet5")
    # The second conv (16 x 6 x 5 x 5): with one input channel both layouts are the same.
    conv = [m for m in fast.net.modules() if isinstance(m, torch.nn.Conv2d)][1]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    plain = _train(tiny_mnist, net="lenet5", channels_last=False)
    _assert_same_weights(fast, plain, atol=1e-5)
    # An MLP has no convolutions: nothing to change.
    assert not ClassifierModule(net="mlp")._channels_last


def test_channels_last_checkpoint_loads_for_inference(tiny_mnist, tmp_path):
    model = _train(tiny_mnist, net="lenet5")
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "cl.ckpt"
    trainer.save_checkpoint(path)
    loaded = inference.load(path)
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x), model(x), atol=1e-5, rtol=1e-4)


def test_compiled_net_trains_to_the_same_weights_with_the_same_checkpoint_keys(tiny_mnist):
    eager = _train(tiny_mnist, net="mlp", net_args={"hidden": [16]})
    compiled = _train(tiny_mnist, net="mlp", net_args={"hidden": [16]}, compile="aot_eager")
    assert compiled.net._compiled_call_impl is not None  # it really went through torch.compile
    _assert_same_weights(eager, compiled, atol=1e-6)
    assert compiled.net.state_dict().keys() == eager.net.state_dict().keys()


def test_unknown_compile_backend_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"model.compile.*'nope'.*inductor"):
        ClassifierModule(compile="nope")


def test_progress_bar_redraws_a_few_times_a_second_with_the_latest_loss(tiny_mnist, tmp_path, capsys):
    # 50 images in batches of 1: 50 training batches an epoch, far faster than 10 per second.
    # The logger writes every 1000 steps, so any loss on the bar is the live one.
    code = main(["fit", "--run.root", str(tmp_path / "runs"), "--data.data_dir", str(tiny_mnist),
                 "--data.val_size", "10", "--data.batch_size", "1", "--model.net", "mlp",
                 "--model.net_args", "{hidden: [8]}", "--trainer.max_epochs", "1", "--run.test", "false",
                 "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1000"])
    assert code == 0
    out = capsys.readouterr()
    text = out.out + out.err
    draws = re.findall(r"Epoch 0:\s+(\d+)%[^\r\n]*", text)
    assert draws and draws[-1] == "100"  # the bar still ends complete
    assert len(draws) < 25, f"{len(draws)} redraws for 50 batches"
    assert re.search(r"Epoch 0:\s+100%[^\r\n]*train/loss_step=\d", text)


def _fit_compiled(tiny_mnist, tmp_path):
    code = main(["fit", "--run.root", str(tmp_path / "runs"), "--data.data_dir", str(tiny_mnist),
                 "--data.val_size", "10", "--data.batch_size", "16", "--model.net", "lenet5",
                 "--model.compile", "aot_eager", "--trainer.max_epochs", "1", "--run.test", "false",
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    assert code == 0
    return next((tmp_path / "runs").iterdir()) / "best.ckpt"


def test_compile_and_channels_last_are_the_commands_choice_not_the_checkpoints(tiny_mnist, tmp_path):
    ckpt = _fit_compiled(tiny_mnist, tmp_path)
    seen = []
    for extra in ([], ["--model.compile", "eager", "--model.channels_last", "false"]):
        out = tmp_path / f"options{len(seen)}.json"
        callback = json.dumps([{"class_path": "tests.helpers.DumpRunOptions", "init_args": {"path": str(out)}}])
        code = main(["test", "--ckpt_path", str(ckpt), "--data.data_dir", str(tiny_mnist), "--data.val_size", "10",
                     "--trainer.enable_progress_bar", "false", "--trainer.callbacks", callback, *extra])
        assert code == 0  # a different run-time choice is not refused as a changed model
        seen.append(json.loads(out.read_text()))
    # Without arguments the run's own config.yaml (which lit_opt adds) decides; arguments win.
    assert seen[0] == {"compile": "aot_eager", "channels_last": True}
    assert seen[1] == {"compile": "eager", "channels_last": False}
