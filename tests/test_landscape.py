"""Loss landscapes (lit_opt/landscape.py) and the run's initial weights (lit_opt/initial_weights.py):
the line's ends are the checkpoints' own losses, filter-normalized directions have each
weight filter's norm and leave biases and BatchNorm alone, the fast first-layer path equals
plain evaluation, init.pt is written once for a fresh run only, and bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lit_opt import inference, nets, subsets
from lit_opt.landscape import Evaluator, filter_normalized_direction, landscape
from tests.test_hessian import run_checkpoint


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    from tests.test_catalogue import write_mnist

    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Two linear-net checkpoints (different seeds) and a LeNet-5 one, in one folder."""
    folder = tmp_path_factory.mktemp("runs")
    return {"a": run_checkpoint(folder / "a.ckpt", "linear", 0), "b": run_checkpoint(folder / "b.ckpt", "linear", 1),
            "lenet": run_checkpoint(folder / "lenet.ckpt", "lenet5", 0)}


def _own_loss(path, mnist_dir, samples=300):
    """The checkpoint's cross-entropy and accuracy on the same seeded training subset, computed
    the plain way (its module's forward)."""
    model = inference.load(path)
    x, y, _ = subsets.training_subset(inference.read_checkpoint(path), samples, 0, str(mnist_dir))
    with torch.no_grad():
        logits = model(x)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def test_the_line_from_a_to_b_starts_at_a_and_ends_at_b(ckpts, mnist_dir):
    got = landscape(str(ckpts["a"]), to=str(ckpts["b"]), steps=7, train_samples=300, test_samples=100,
                    data_dir=str(mnist_dir))
    rows = {r["alpha"]: r for r in got["rows"]}
    assert sorted(rows) == [-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    for alpha, name in ((0.0, "a"), (1.0, "b")):
        loss, acc = _own_loss(ckpts[name], mnist_dir)
        assert rows[alpha]["train_loss"] == pytest.approx(loss, rel=1e-5)
        assert rows[alpha]["train_acc"] == pytest.approx(acc)
    about = got["about"]
    assert about["train_subset"] == "300 of the 500 training images of mnist (seed 0)"
    assert about["test_subset"] == "100 of the 200 test images of mnist (seed 0)"
    assert "eval mode" in about["note"]


def test_the_plane_is_centred_on_the_checkpoint(ckpts, mnist_dir):
    got = landscape(str(ckpts["a"]), plane=True, steps=3, train_samples=300, test_samples=100, data_dir=str(mnist_dir))
    assert len(got["rows"]) == 9
    centre = next(r for r in got["rows"] if r["alpha"] == 0 and r["beta"] == 0)
    assert centre["train_loss"] == pytest.approx(_own_loss(ckpts["a"], mnist_dir)[0], rel=1e-5)
    assert "filter-normalized" in got["about"]["directions"]


@pytest.mark.parametrize("name, shape", [("lenet5", (1, 28, 28)), ("cifar_resnet", (3, 8, 8)), ("mlp", (1, 4, 4))])
def test_filter_normalized_directions_have_each_filters_norm_and_skip_biases_and_batchnorm(name, shape):
    net = nets.build(name, shape, 10)
    params = {k: p.detach() for k, p in net.named_parameters()}
    d = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    assert d.keys() == params.keys()
    moved = 0
    for k, w in params.items():
        if w.dim() <= 1:  # biases, BatchNorm's weight and bias
            assert torch.count_nonzero(d[k]) == 0, k
            continue
        moved += 1
        torch.testing.assert_close(d[k].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5, atol=1e-7)
    assert moved >= 2
    if name == "cifar_resnet":  # BatchNorm's buffers are not parameters: the plane keeps the centre's
        base = {k: v.detach() for k, v in net.state_dict().items()}
        ev = Evaluator(net, {"train": (torch.randn(4, *shape), torch.zeros(4, dtype=torch.long))}, base, [d, d])
        state = ev.state((0.7, -0.3))
        for k, v in base.items():
            if k not in params or params[k].dim() <= 1:
                assert torch.equal(state[k], v), k


def test_the_fast_first_layer_path_equals_plain_evaluation():
    net = nets.build("mlp", (1, 6, 6), 10, hidden=[12, 8], dropout=0.25)
    base = {k: v.detach() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    params = {k: p.detach() for k, p in net.named_parameters()}
    d1, d2 = filter_normalized_direction(params, g), filter_normalized_direction(params, g)
    data = {"train": (torch.randn(50, 1, 6, 6, generator=g), torch.randint(0, 10, (50,), generator=g))}
    fast = Evaluator(net, data, base, [d1, d2], batch_size=16)
    plain = Evaluator(net, data, base, [d1, d2], batch_size=16, fast=False)
    assert fast.first is not None and plain.first is None
    for c in ((0.0, 0.0), (0.5, -1.0), (-1.0, 0.25)):
        a, b = fast(c), plain(c)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5) and a["train_acc"] == b["train_acc"]
    assert net.training  # evaluation left the module's mode alone


# --- initial weights ----------------------------------------------------------------------------------


def _fit(run_dir: Path, ckpt_path=None, max_steps=2):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from lit_opt.initial_weights import InitialWeights
    from lit_opt.module import ClassifierModule, default_data_info
    from tests.conftest import quiet_trainer

    L.seed_everything(0, verbose=False)
    model = ClassifierModule(net="linear", data_info=default_data_info("mnist"))
    start = {k: v.clone() for k, v in model.net.state_dict().items()}
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    trainer = quiet_trainer(max_steps=max_steps, callbacks=[InitialWeights(run_dir)])
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8), ckpt_path=ckpt_path)
    trainer.save_checkpoint(run_dir / "last.ckpt")
    return start


def test_initial_weights_are_kept_once_for_a_fresh_run_and_read_weights_only(tmp_path):
    start = _fit(tmp_path)
    init = tmp_path / "init.pt"
    loaded = inference.load(init)  # the safe reader: weights only, checked
    for k, v in start.items():
        assert torch.equal(loaded.net.state_dict()[k], v)
    assert not torch.equal(inference.load(tmp_path / "last.ckpt").net.state_dict()["1.weight"], start["1.weight"])
    stamp = init.stat().st_mtime_ns
    _fit(tmp_path)  # another fresh run in the folder: the first init.pt is never replaced
    assert init.stat().st_mtime_ns == stamp
    init.unlink()
    _fit(tmp_path, ckpt_path=tmp_path / "last.ckpt", max_steps=4)  # a resume's weights are not initial
    assert not init.exists()
    assert not list(tmp_path.glob(".init.pt.tmp*"))


def test_the_default_line_runs_from_the_initial_weights(tmp_path, mnist_dir):
    _fit(tmp_path)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    ckpt["datamodule_hyper_parameters"] = {"name": "mnist", "val_size": 100}
    torch.save(ckpt, tmp_path / "last.ckpt")
    got = landscape(str(tmp_path / "last.ckpt"), steps=7, train_samples=300, test_samples=50, data_dir=str(mnist_dir))
    rows = {r["alpha"]: r for r in got["rows"]}
    assert "initial weights" in got["about"]["from"]
    # alpha 0: the initial weights' loss on the subset (init.pt records no data split: use last's).
    model = inference.load(tmp_path / "init.pt")
    x, y, _ = subsets.training_subset(ckpt, 300, 0, str(mnist_dir))
    with torch.no_grad():
        assert rows[0.0]["train_loss"] == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-5)


# --- the command ----------------------------------------------------------------------------------------


def test_the_landscape_command_writes_csv_png_json_and_prints_json(ckpts, mnist_dir, tmp_path, capsys):
    from lit_opt.cli import main

    code = main(["landscape", "--ckpt_path", str(ckpts["a"]), "--plane", "--steps", "3", "--train_samples", "100",
                 "--test_samples", "50", "--data_dir", str(mnist_dir), "--out", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["mode"] == "plane" and out["points"] == 9
    rows = Path(out["files"]["csv"]).read_text().splitlines()
    assert rows[0] == "alpha,beta,train_loss,train_acc,test_loss,test_acc" and len(rows) == 10
    assert Path(out["files"]["png"]).read_bytes()[:4] == b"\x89PNG"
    assert json.loads(Path(out["files"]["json"]).read_text())["train_subset"].startswith("100 of the 500")


@pytest.mark.parametrize("args, message", [
    (["--ckpt_path", "{missing}"], "no such file"),
    (["--ckpt_path", "{a}", "--to", "{lenet}"], "holds a different net (lenet5"),
    (["--ckpt_path", "{a}", "--train_samples", "-1"], "--train_samples must be a whole number of images, at least 1"),
    (["--ckpt_path", "{a}", "--test_samples", "0"], "--test_samples must be a whole number of images, at least 1"),
    (["--ckpt_path", "{a}"], "no initial weights beside"),
    (["--ckpt_path", "{a}", "--plane", "--to", "{b}"], "give --to (a line) or --plane, not both"),
    (["--ckpt_path", "{a}", "--plane", "--steps", "1"], "--steps must be at least 2"),
])
def test_the_landscape_command_refuses_bad_input_clearly(ckpts, mnist_dir, tmp_path, capsys, args, message):
    from lit_opt.landscape import main

    argv = [a.format(missing=tmp_path / "nope.ckpt", **{k: str(v) for k, v in ckpts.items()}) for a in args]
    assert main([*argv, "--data_dir", str(mnist_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_command_leaves_the_callers_thread_count_alone(ckpts, mnist_dir, tmp_path, capsys):
    from lit_opt.landscape import main

    before = torch.get_num_threads()
    assert main(["--ckpt_path", str(ckpts["a"]), "--to", str(ckpts["b"]), "--steps", "2", "--train_samples", "10",
                 "--test_samples", "10", "--data_dir", str(mnist_dir), "--out", str(tmp_path), "--threads", "1"]) == 0
    assert torch.get_num_threads() == before
    assert main(["--ckpt_path", str(ckpts["a"]), "--threads", "-1", "--out", str(tmp_path)]) == 2
    assert "--threads must be 0" in capsys.readouterr().err
