"""inference.load/classify: a checkpoint rebuilds its model alone, safely; bad files of every
kind (missing, empty, truncated, random bytes, a pickle that would run code, another kind
of model, weights that do not fit) give one clear CheckpointError naming the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lit_opt import inference
from lit_opt.errors import CheckpointError
from lit_opt.module import ClassifierModule, default_data_info


def make_checkpoint(path: Path, net: str = "lenet5", dataset: str = "mnist", seed: int = 0) -> Path:
    """A real lit_opt checkpoint (Trainer.save_checkpoint after one step on random data)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from tests.conftest import quiet_trainer

    L.seed_everything(seed, verbose=False)
    info = default_data_info(dataset)
    model = ClassifierModule(net=net, optimizer="adam", data_info=info)
    x = torch.randn(8, *info["input_shape"])
    y = torch.randint(0, info["num_classes"], (8,))
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8))
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def seven(dark_on_light: bool = True) -> Image.Image:
    bg, ink = (255, 0) if dark_on_light else (0, 255)
    im = Image.new("L", (120, 140), bg)
    ImageDraw.Draw(im).line([(20, 20), (95, 20), (50, 125)], fill=ink, width=12, joint="curve")
    return im


# --- good checkpoints ---------------------------------------------------------------------


def test_load_rebuilds_the_model_in_eval_mode_with_its_weights(ckpt):
    model = inference.load(ckpt)
    assert isinstance(model, ClassifierModule) and not model.training
    assert model.hparams.net == "lenet5" and model.class_names == [str(i) for i in range(10)]
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, saved[k])
    assert "lenet5 on mnist" in inference.describe(model)


def test_load_reads_with_weights_only(ckpt, monkeypatch):
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    inference.load(ckpt)
    assert calls == [True]


def test_classify_returns_probabilities_by_class_name_most_probable_first(ckpt):
    model = inference.load(ckpt)
    probs = inference.classify(model, seven())
    assert list(probs) == sorted(probs, key=lambda k: -probs[k])
    assert set(probs) == set(model.class_names)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    # The same as the net on the preprocessed tensor; polarity does not matter.
    pre = inference.preprocess(seven(), model)
    with torch.no_grad():
        direct = model(pre.tensor).softmax(1)[0]
    for name, p in probs.items():
        assert p == pytest.approx(float(direct[model.class_names.index(name)]), abs=1e-6)
    assert inference.classify(model, pre) == probs
    assert inference.classify(model, seven(dark_on_light=False)) == pytest.approx(probs)


def test_an_empty_canvas_is_not_classified(ckpt):
    model = inference.load(ckpt)
    with pytest.raises(inference.EmptyImageError, match="empty"):
        inference.classify(model, Image.new("L", (280, 280), 255))


def test_fashion_checkpoints_classify_with_their_class_names(tmp_path):
    model = inference.load(make_checkpoint(tmp_path / "fashion.ckpt", net="mlp", dataset="fashion_mnist"))
    shirt = Image.new("RGB", (300, 300), "white")
    ImageDraw.Draw(shirt).polygon([(60, 60), (240, 60), (280, 120), (220, 140), (220, 280), (80, 280),
                                   (80, 140), (20, 120)], fill=(30, 60, 150))
    probs = inference.classify(model, shirt)
    assert set(probs) == {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                          "Sneaker", "Bag", "Ankle boot"}


def test_colour_checkpoints_resize_photos(tmp_path):
    model = inference.load(make_checkpoint(tmp_path / "cifar.ckpt", net="linear", dataset="cifar10"))
    photo = np.random.default_rng(0).integers(0, 256, size=(100, 150, 3), dtype=np.uint8)
    pre = inference.preprocess(photo, model)
    assert pre.tensor.shape == (1, 3, 32, 32)
    assert "airplane" in inference.classify(model, pre)


# --- bad checkpoints: real files on disk ----------------------------------------------------


class RunsCode:
    """Unpickling this calls Path.touch(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def bad_checkpoints(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the error must contain)."""
    data = good.read_bytes()
    out: dict[str, tuple[Path, str]] = {}

    def write(name: str, blob: bytes, words: str):
        path = folder / f"{name}.ckpt"
        path.write_bytes(blob)
        out[name] = (path, words)

    write("truncated", data[: len(data) // 2], "truncated")
    write("cut_short", data[:100], "truncated")
    write("empty", b"", "empty")
    write("random", np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
          "not a checkpoint")
    write("text", b"model: lenet5\nweights: none\n", "not a checkpoint")
    write("plain_pickle", pickle.dumps({"state_dict": {}}, protocol=2), "not a checkpoint")

    def save(name: str, obj, words: str):
        path = folder / f"{name}.ckpt"
        torch.save(obj, path)
        out[name] = (path, words)

    ckpt = torch.load(good, weights_only=True)
    save("runs_code", {**ckpt, "payload": RunsCode(folder / "code_ran")}, "refused")
    save("bare_state_dict", ckpt["state_dict"], "not a Lightning checkpoint")
    save("a_tensor", torch.zeros(3), "not a Lightning checkpoint")
    foreign = {k: v for k, v in ckpt.items() if not k.startswith("lit_opt")}
    foreign["hparams_name"] = "kwargs"
    save("other_model", foreign, "another kind of model")
    save("no_hparams", {k: v for k, v in ckpt.items() if k != "hyper_parameters"}, "hyperparameters")
    save("newer_format", {**ckpt, "lit_opt": {"format": 99, "version": "9.0"}}, "format 99")
    save("unknown_net", {**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"], "net": "transformer"}},
         "cannot build|can build")
    save("other_net", {**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"], "net": "mlp"}},
         "weights do not match")
    state = dict(ckpt["state_dict"])
    first = next(iter(state))
    state[first] = torch.zeros(7, 7)
    save("wrong_shape", {**ckpt, "state_dict": state}, "wrong shape")
    state = dict(ckpt["state_dict"])
    state.pop([k for k in state if k.startswith("net.")][-1])  # a weight of the net itself
    save("missing_weight", {**ckpt, "state_dict": state}, "missing")
    return out


@pytest.fixture(scope="module")
def bad(ckpt, tmp_path_factory):
    return bad_checkpoints(ckpt, tmp_path_factory.mktemp("bad"))


BAD_NAMES = ["truncated", "cut_short", "empty", "random", "text", "plain_pickle", "runs_code",
             "bare_state_dict", "a_tensor", "other_model", "no_hparams", "newer_format", "unknown_net",
             "other_net", "wrong_shape", "missing_weight"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_checkpoints_give_one_clear_error_naming_the_file(bad, name):
    path, words = bad[name]
    with pytest.raises(CheckpointError) as info:
        inference.load(path)
    message = str(info.value)
    assert message.startswith(str(path) + ":")
    assert any(w in message for w in words.split("|")), message
    assert "Traceback" not in message and len(message) < 600
    exc = info.value  # no chained torch traceback behind it
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_a_pickle_that_would_run_code_is_refused_and_its_code_never_runs(bad):
    path, _ = bad["runs_code"]
    marker = path.parent / "code_ran"
    with pytest.raises(CheckpointError, match="refused"):
        inference.load(path)
    assert not marker.exists()
    # The control: an unsafe load of the same file does run the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        inference.load(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="is a folder"):
        inference.load(tmp_path)
