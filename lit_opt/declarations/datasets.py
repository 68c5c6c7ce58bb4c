"""The datasets lit_opt knows: one `DatasetSpec` each, importable without torch.

A spec says what a dataset is (name, image shape, class names, normalization statistics,
augmentation default) and where it comes from (a torchvision-style class and the files it
expects); lit_opt/datasets.py does the loading. Adding a torchvision-style dataset is one
entry here, or `register(DatasetSpec(...))` from a program:

    register(DatasetSpec("svhn", (3, 32, 32), tuple("0123456789"), (0.438, 0.444, 0.473),
                         (0.198, 0.201, 0.197), False, "SVHN", ("train_32x32.mat", "test_32x32.mat"),
                         "street-view house numbers", split_arg="split"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from lit_opt.errors import ConfigError

MNIST_DIGITS = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
# The fine label names, in label order, as in the dataset's `meta` file. Written out here
# so that a model can be configured (and its checkpoint described) before any file loads.
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()

_MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    input_shape: tuple[int, int, int] | None  # (C, H, W); None: read from the files
    class_names: tuple[str, ...] | None  # None: read from the files
    mean: tuple[float, ...] | None  # per channel, of pixel/255 over the training set
    std: tuple[float, ...] | None
    augment: bool  # random crop (pad 4) + horizontal flip by default
    # A class name in torchvision.datasets, or a class with torchvision's interface (root,
    # train/split, download; .data and .targets or .labels); None for image_folder.
    torchvision_class: Union[str, type, None]
    expected_files: tuple[str, ...]  # relative to the data folder
    description: str
    split_arg: str = "train"  # how the class picks a split: train=True/False, or split="train"/"test"


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", (1, 28, 28), tuple(MNIST_DIGITS), (0.1307,), (0.3081,), False, "MNIST",
        tuple(f"MNIST/raw/{f}" for f in _MNIST_FILES), "handwritten digits, 60k train / 10k test"),
    "fashion_mnist": DatasetSpec(
        "fashion_mnist", (1, 28, 28), tuple(FASHION_CLASSES), (0.2860,), (0.3530,), False,
        "FashionMNIST", tuple(f"FashionMNIST/raw/{f}" for f in _MNIST_FILES),
        "Zalando clothing pictures, 60k train / 10k test"),
    "cifar10": DatasetSpec(
        "cifar10", (3, 32, 32), tuple(CIFAR10_CLASSES), (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616), True, "CIFAR10",
        tuple(f"cifar-10-batches-py/{f}" for f in
              [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]),
        "32x32 colour photos in 10 classes, 50k train / 10k test"),
    "cifar100": DatasetSpec(
        "cifar100", (3, 32, 32), tuple(CIFAR100_CLASSES), (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762), True, "CIFAR100",
        ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        "32x32 colour photos in 100 classes (fine labels), 50k train / 10k test"),
    "image_folder": DatasetSpec(
        "image_folder", None, None, None, None, False, None,
        ("train/<class name>/<image>", "test/<class name>/<image>"),
        "your own pictures: a folder (or .tar.gz/.zip) holding train/ and test/ class folders"),
}


def get_spec(name: str) -> DatasetSpec:
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[key]




def register(spec: DatasetSpec) -> None:
    """Add (or replace) a dataset: every part of lit_opt (CLI, app, checkpoints) then knows it."""
    DATASETS[spec.name] = spec
