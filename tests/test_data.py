"""The data module reads every dataset's real file format, splits and batches it correctly,
downloads through torchvision, and explains clearly when files are missing offline."""

from __future__ import annotations

import http.server
import hashlib
import socket
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from PIL import Image

from lit_opt import nets
from lit_opt.augment import Augmentation
from lit_opt.data import ClassificationDataModule, ShuffledBatches
from lit_opt.datasets import CIFAR100_CLASSES, CIFAR10_CLASSES, FASHION_CLASSES
from lit_opt.errors import ConfigError, DataNotFoundError
from tests.conftest import quiet_trainer
from tests.helpers import images_for, write_cifar, write_idx

N_TRAIN, N_TEST = 60, 20


def _labels(n, k, seed):
    return np.random.default_rng(seed).integers(0, k, size=n)


def make_dataset(kind: str, root: Path, monkeypatch) -> dict:
    """Write a small dataset in `kind`'s real file format; return what was written."""
    if kind in ("mnist", "fashion_mnist"):
        shape, k = (28, 28), 10
    elif kind == "cifar100":
        shape, k = (32, 32, 3), 100
    else:
        shape, k = (32, 32, 3), 10
    train = (images_for(N_TRAIN, shape, 1), _labels(N_TRAIN, k, 2))
    test = (images_for(N_TEST, shape, 3), _labels(N_TEST, k, 4))
    if kind in ("mnist", "fashion_mnist"):
        raw = root / ("MNIST" if kind == "mnist" else "FashionMNIST") / "raw"
        write_idx(raw, "train", *train)
        write_idx(raw, "t10k", *test)
        names = [str(i) for i in range(10)] if kind == "mnist" else FASHION_CLASSES
    elif kind in ("cifar10", "cifar100"):
        # CIFAR pickles store planes (N, 3, 32, 32); our uint8 arrays are (N, 32, 32, 3).
        planes = lambda x: np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # noqa: E731
        names = CIFAR10_CLASSES if kind == "cifar10" else CIFAR100_CLASSES
        md5 = write_cifar(root, kind, (planes(train[0]), train[1]), (planes(test[0]), test[1]), names)
        # The only thing faked: torchvision's checksums of the official files, which these are not.
        cls = tvd.CIFAR10 if kind == "cifar10" else tvd.CIFAR100
        monkeypatch.setattr(cls, "train_list", [[n, md5[n]] for n, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[n, md5[n]] for n, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})
    else:  # image_folder: PNG files (lossless) under train/<class>/ and test/<class>/
        names = ["cat", "dog", "zebra"]
        k = 3
        train = (train[0], train[1] % k)
        test = (test[0], test[1] % k)
        for split, (xs, ys) in (("train", train), ("test", test)):
            for i, (x, y) in enumerate(zip(xs, ys)):
                folder = root / split / names[y]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(x).save(folder / f"{i:05d}.png")
    to_nchw = (lambda x: x[:, None]) if train[0].ndim == 3 else (lambda x: x.transpose(0, 3, 1, 2))
    return {"train": (to_nchw(train[0]), train[1]), "test": (to_nchw(test[0]), test[1]), "names": list(names)}


KINDS = ["mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder"]


def _index_by_bytes(images: np.ndarray) -> dict[bytes, int]:
    return {img.tobytes(): i for i, img in enumerate(images)}


@pytest.mark.parametrize("kind", KINDS)
def test_each_dataset_round_trips_pixels_labels_and_class_names(kind, tmp_path, monkeypatch):
    written = make_dataset(kind, tmp_path, monkeypatch)
    dm = ClassificationDataModule(kind, data_dir=str(tmp_path), val_size=15, download=False)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert dm.info["class_names"] == written["names"]
    assert dm.info["input_shape"] == list(written["train"][0].shape[1:])

    # Train + validation together are the training files, each image once, with its label.
    lookup = _index_by_bytes(written["train"][0])
    seen = []
    for images, labels in (dm.train_set, dm.val_set):
        for img, label in zip(images.numpy(), labels.tolist()):
            i = lookup[img.tobytes()]
            assert label == written["train"][1][i]
            seen.append(i)
    assert sorted(seen) == list(range(N_TRAIN))
    assert len(dm.val_set[1]) == 15
    if kind == "image_folder":  # files are read in folder order; compare as a set
        lookup = _index_by_bytes(written["test"][0])
        order = [lookup[img.tobytes()] for img in dm.test_set[0].numpy()]
        assert sorted(order) == list(range(N_TEST))
        assert dm.test_set[1].tolist() == [int(written["test"][1][i]) for i in order]
    else:
        assert np.array_equal(dm.test_set[0].numpy(), written["test"][0])
        assert dm.test_set[1].tolist() == written["test"][1].tolist()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("net", list(nets.NETS))
def test_every_dataset_trains_every_net_for_one_step(kind, net, tmp_path, monkeypatch):
    from lit_opt.module import ClassifierModule

    make_dataset(kind, tmp_path, monkeypatch)
    dm = ClassificationDataModule(kind, data_dir=str(tmp_path), val_size=10, batch_size=16, download=False)
    net_args = {"width": 4} if net == "cifar_resnet" else {}
    model = ClassifierModule(net=net, net_args=net_args, optimizer="adam", data_info=dm.info)
    before = [p.detach().clone() for p in model.parameters()]
    quiet_trainer(fast_dev_run=1).fit(model, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_image_folder_reads_a_tar_gz_archive(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    written = make_dataset("image_folder", tree / "pictures", monkeypatch)
    archive = tmp_path / "pictures.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tree / "pictures", arcname="pictures")
    dm = ClassificationDataModule("image_folder", data_dir=str(archive), val_size=5)
    dm.setup("test")
    assert dm.info["class_names"] == written["names"]
    assert len(dm.test_set[1]) == N_TEST
    assert not (tmp_path / "pictures").exists()  # unpacked into the cache, not beside the archive


# --- batches -------------------------------------------------------------------------------


def _batcher(n=103, batch=10, seed=7, augment=False):
    images = torch.arange(n, dtype=torch.uint8).repeat_interleave(4).view(n, 1, 2, 2)
    return ShuffledBatches(images, torch.arange(n), batch, seed, augment)


def test_each_epoch_serves_every_sample_once_in_a_new_order():
    b = _batcher()
    epochs = [torch.cat([y for _, y in b]) for _ in range(2)]
    for labels in epochs:
        assert sorted(labels.tolist()) == list(range(103))
    assert not torch.equal(epochs[0], epochs[1])
    assert len(b) == 11  # the last batch is partial: 103 = 10 * 10 + 3


def test_batcher_resumes_mid_epoch_with_the_batches_not_yet_seen():
    whole = _batcher(augment=False)
    reference = [y for epoch in range(2) for _, y in whole]

    first = _batcher()
    served = [y for _, y in first]  # epoch 0
    it = iter(first)
    served += [next(it)[1] for _ in range(4)]  # 4 batches of epoch 1, then "crash"
    state = first.state_dict()

    resumed = _batcher(seed=999)  # the seed comes back from the state
    resumed.load_state_dict(state)
    served += [y for _, y in resumed]
    assert len(served) == len(reference)
    assert all(torch.equal(a, b) for a, b in zip(served, reference))


def test_the_default_augmentation_takes_a_window_of_the_zero_padded_image():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)  # no zeros: padding shows
    out = Augmentation().apply(images, g, epoch=0, flip_bits=None)
    assert out.shape == images.shape and out.dtype == images.dtype
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flipped_some = False
    for img, src in zip(out, padded):
        windows = [src[:, y:y + 8, x:x + 8] for y in range(9) for x in range(9)]
        plain = any(torch.equal(img, w) for w in windows)
        flipped = any(torch.equal(img, w.flip(-1)) for w in windows)
        assert plain or flipped
        flipped_some |= flipped and not plain
    assert flipped_some


def test_cifar_style_augmentation_is_reproducible_across_a_resume():
    a, b = _batcher(augment=True), _batcher(augment=True)
    it = iter(a)
    next(it)
    state = a.state_dict()
    rest_a = [x for x, _ in it]
    b.load_state_dict(state)
    rest_b = [x for x, _ in b]
    assert len(rest_a) == len(rest_b) == len(a) - 1
    assert all(torch.equal(x, y) for x, y in zip(rest_a, rest_b))


# --- bad input and missing files --------------------------------------------------------------


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ConfigError, match="mnist, fashion_mnist, cifar10, cifar100, image_folder"):
        ClassificationDataModule("svhn")


@pytest.mark.parametrize("field, low", [("batch_size", 1), ("val_size", 0), ("eval_batch_size", 1)])
def test_sizes_below_their_least_are_rejected_naming_the_field(field, low):
    with pytest.raises(ConfigError, match=f"data.{field} must be an integer >= {low}"):
        ClassificationDataModule("mnist", **{field: low - 1})


def test_val_size_0_trains_on_every_training_image(tmp_path, monkeypatch):
    make_dataset("mnist", tmp_path, monkeypatch)
    dm = ClassificationDataModule("mnist", data_dir=str(tmp_path), val_size=0)
    dm.setup("fit")
    assert len(dm.train_set[1]) == N_TRAIN and len(dm.val_set[1]) == 0


def test_validation_split_must_leave_training_images(tmp_path, monkeypatch):
    make_dataset("mnist", tmp_path, monkeypatch)
    dm = ClassificationDataModule("mnist", data_dir=str(tmp_path), val_size=N_TRAIN)
    with pytest.raises(ConfigError, match="val_size"):
        dm.setup("fit")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket closes


def test_offline_download_failure_is_one_clear_paragraph(tmp_path, monkeypatch):
    monkeypatch.setattr(tvd.MNIST, "mirrors", [f"http://127.0.0.1:{_closed_port()}/"])
    dm = ClassificationDataModule("mnist", data_dir=str(tmp_path / "data"))
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "data") in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "--data.data_dir" in message


def test_offline_failure_through_the_cli_prints_no_traceback(tmp_path, monkeypatch, capsys):
    from lit_opt.cli import main

    monkeypatch.setattr(tvd.FashionMNIST, "mirrors", [f"http://127.0.0.1:{_closed_port()}/"])
    code = main(["fit", "--data.name", "fashion_mnist", "--data.data_dir", str(tmp_path / "d"),
                 "--run.root", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false"])
    err = capsys.readouterr().err
    assert code == 2
    assert "could not be downloaded" in err and "Traceback" not in err


@pytest.fixture
def mnist_server(tmp_path):
    """A local HTTP server holding gzipped MNIST-format files, as the download mirror would."""
    served = tmp_path / "served"
    train = (images_for(30, (28, 28), 5), _labels(30, 10, 6))
    test = (images_for(10, (28, 28), 7), _labels(10, 10, 8))
    files = write_idx(served, "train", *train, gz=True) + write_idx(served, "t10k", *test, gz=True)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    resources = [(p.name, hashlib.md5(p.read_bytes()).hexdigest()) for p in files]
    yield f"http://127.0.0.1:{server.server_address[1]}/", resources, train, test
    server.shutdown()


def test_missing_files_are_downloaded_through_torchvision(tmp_path, monkeypatch, mnist_server):
    url, resources, train, test = mnist_server
    monkeypatch.setattr(tvd.MNIST, "mirrors", [url])
    monkeypatch.setattr(tvd.MNIST, "resources", resources)
    dm = ClassificationDataModule("mnist", data_dir=str(tmp_path / "data"), val_size=5)
    dm.prepare_data()
    dm.setup("test")
    assert (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    assert np.array_equal(dm.test_set[0][:, 0].numpy(), test[0])
    assert dm.test_set[1].tolist() == test[1].tolist()


def test_normalize_is_pixel_over_255_minus_mean_over_std_per_channel():
    from lit_opt.data import normalize

    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    got = normalize(images, mean, std)
    for c in range(3):
        expected = (images[:, c].double() / 255 - mean[c]) / std[c]
        torch.testing.assert_close(got[:, c].double(), expected, atol=1e-6, rtol=0)
    floats = images.float()
    before = floats.clone()
    normalize(floats, mean, std)
    assert torch.equal(floats, before)  # a float input is not changed in place
