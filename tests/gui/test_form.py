"""The run form: generated from the optimizer registry, read and written as the CLI's YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_opt import optim
from gui.widgets.run_form import FormError, RunForm

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def form(qtbot):
    widget = RunForm()
    qtbot.addWidget(widget)
    return widget


def test_the_form_offers_lit_opts_declared_choices(form):
    from lit_opt import declarations
    from gui.widgets.playground import FUNCTION_NAMES

    def items(combo):
        return [combo.itemText(i) for i in range(combo.count())]

    assert items(form.dataset) == list(declarations.DATASETS)
    assert items(form.net) == list(declarations.NETS)
    assert items(form.scheduler) == list(declarations.SCHEDULER_OPTIONS)
    assert FUNCTION_NAMES == list(declarations.TOY_FUNCTIONS)


@pytest.mark.parametrize("name", optim.names())
def test_optimizer_fields_come_from_the_registry_schema(form, name):
    form.optimizer.setCurrentText(name)
    schema = {hp.name: hp for hp in optim.schema(name)}
    shown = form._opt_fields
    assert list(shown) == [n for n in schema if n != "weight_decay"]  # weight decay: regularization
    for key, field in shown.items():
        hp = schema[key]
        value = field.value()
        assert value == (list(hp.default) if isinstance(hp.default, tuple) else hp.default)
        assert hp.help in field.toolTip() and hp.range_text in field.toolTip()
    assert form.to_config() == ({} if name == "sgd" else {"model": {"optimizer": name}})


def test_sam_shows_its_base_optimizers_fields(form, qtbot):
    form.optimizer.setCurrentText("sam")
    form._opt_fields["base"].editor.setCurrentText("adam")
    qtbot.waitUntil(lambda: "betas" in form._opt_fields)
    assert {"base", "rho", "adaptive", "lr", "betas", "eps"} <= set(form._opt_fields)
    assert form.to_config()["model"] == {"optimizer": "sam", "optimizer_args": {"base": "adam"}}


# Every fit config (the study specs in configs/studies/ are not fit configs), the anchors' too:
# their keys without a field (Lookahead in trainer.callbacks, data.augment_args, ...) survive.
@pytest.mark.parametrize("path", sorted([*(ROOT / "configs").glob("*.yaml"), *(ROOT / "configs/fast").glob("*.yaml"),
                                         *(ROOT / "configs/anchors").glob("*.yaml")]),
                         ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_config_file_loads_and_saves_unchanged(form, tmp_path, path):
    config = yaml.safe_load(path.read_text())
    form.load(path)
    assert form.to_config() == config
    form.save(tmp_path / "again.yaml")
    assert yaml.safe_load((tmp_path / "again.yaml").read_text()) == config


def test_keys_the_form_does_not_show_survive_edits(form):
    config = {"trainer": {"gradient_clip_val": 0.5, "max_epochs": 3},
              "model": {"optimizer": "adam", "optimizer_args": {"betas": [0.9, 0.99]}, "lr": 0.002},
              "data": {"eval_batch_size": 250, "split_seed": 3}}
    form.load_config(config)
    form._fields["model.l2"].set_value(1e-3)
    form._opt_fields["lr"].set_value(0.01)
    out = form.to_config()
    assert out["trainer"] == {"gradient_clip_val": 0.5, "max_epochs": 3}
    assert out["data"] == {"eval_batch_size": 250, "split_seed": 3}
    assert out["model"] == {"optimizer": "adam", "optimizer_args": {"betas": [0.9, 0.99]}, "lr": 0.01, "l2": 1e-3}
    form.optimizer.setCurrentText("sgd")  # another optimizer: adam's arguments go
    assert "optimizer_args" not in form.to_config()["model"] and "lr" not in form.to_config()["model"]


def test_invalid_fields_are_named_with_their_range(form):
    form._opt_fields["lr"].editor.setText("-1")
    form._fields["model.dropout"].editor.setText("1.5")
    with pytest.raises(FormError) as err:
        form.to_config()
    assert "lr must be a number in (0, inf)" in str(err.value)
    assert "dropout must be a number in [0, 1)" in str(err.value)


@pytest.mark.parametrize("trainer", [{"devices": 2}, {"devices": [0, 1], "accelerator": "gpu"},
                                     {"num_nodes": 2}, {"strategy": "ddp"}, {"devices": -1, "accelerator": "gpu"}])
def test_more_than_one_device_is_refused_with_the_cli_command(form, trainer):
    form.load_config({"trainer": trainer})
    with pytest.raises(FormError, match="python -m lit_opt fit --config FILE --trainer.devices N"):
        form.to_config()


def test_choosing_cpu_or_one_gpu_writes_the_trainer_keys(form):
    form.set_gpus(["Fake GPU"])
    form.device.setCurrentIndex(form.device.findData("gpu:0"))
    assert form.to_config()["trainer"] == {"accelerator": "gpu", "devices": [0]}
    form.device.setCurrentIndex(form.device.findData("cpu"))
    assert form.to_config()["trainer"] == {"accelerator": "cpu", "devices": 1}


def test_a_value_with_more_than_six_digits_is_shown_and_kept_exactly(form):
    """The form showed floats with 6 significant digits, and saving wrote the rounded value
    back (airbench's weight decay 0.0153 / 11.5 became 0.00133043): now every digit is kept."""
    from gui.widgets.fields import format_value

    assert format_value(0.1) == "0.1" and format_value(1e-05) == "1e-05"
    assert float(format_value(0.0153 / 11.5)) == 0.0153 / 11.5
    form.load_config({"model": {"weight_decay": 0.0153 / 11.5}})
    assert form.to_config()["model"]["weight_decay"] == 0.0153 / 11.5
