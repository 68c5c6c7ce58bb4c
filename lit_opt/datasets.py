"""Loading whole dataset splits from disk into uint8 tensors.

Every dataset lit_opt knows is a `DatasetSpec` (lit_opt/declarations/datasets.py): its
name, image shape, class names, normalization statistics and where it comes from. `load_split(spec, root, train)` returns
`(images, labels)`: images uint8 (N, C, H, W), labels int64 (N,). The files are read
with torchvision's own dataset classes (`image_folder` pictures are decoded once with
PIL and cached), downloaded through torchvision when missing, and when that fails
the user gets one paragraph saying which files were expected where.

Derived files (decoded image folders, unpacked archives) go to the per-user cache
folder, never into the data folder, which may be read-only.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
from pathlib import Path

import torch

from lit_opt.declarations.datasets import (  # noqa: F401  (the spec table, re-exported)
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    DATASETS,
    FASHION_CLASSES,
    MNIST_DIGITS,
    DatasetSpec,
    get_spec,
)
from lit_opt.errors import ConfigError, DataNotFoundError

def cache_dir() -> Path:
    """Per-user folder for downloads and derived files: $LIT_OPT_CACHE, else XDG's cache."""
    if os.environ.get("LIT_OPT_CACHE"):
        return Path(os.environ["LIT_OPT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lit_opt"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The data folder: the argument, else $LIT_OPT_DATA, else <cache>/data."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("LIT_OPT_DATA"):
        return Path(os.environ["LIT_OPT_DATA"]).expanduser()
    return cache_dir() / "data"


def _missing_files(spec: DatasetSpec, root: Path) -> list[str]:
    return [f for f in spec.expected_files if not (root / f).exists()]


def _not_found(spec: DatasetSpec, root: Path, reason: str) -> DataNotFoundError:
    files = "\n".join(f"  {root / f}" for f in spec.expected_files)
    if spec.torchvision_class:
        how = ("Connect to the internet and run again (torchvision downloads it), or copy the "
               "files there yourself, or point --data.data_dir (or LIT_OPT_DATA) at a folder "
               "that holds them.")
    else:
        how = ("Point --data.data_dir at a folder (or a .tar.gz/.zip archive) that holds train/ "
               "and test/ folders with one sub-folder of images per class.")
    return DataNotFoundError(
        f"The {spec.name} dataset is not in {root} and could not be downloaded ({reason}). "
        f"lit_opt expected these files:\n{files}\n{how}")


def ensure_available(spec: DatasetSpec, root: Path, download: bool = True) -> None:
    """Make sure the dataset's files are in `root`, downloading through torchvision if allowed."""
    if spec.torchvision_class is None:
        image_folder_root(root)  # raises with a clear message when the tree is not there
        return
    missing = _missing_files(spec, root)
    if not missing:
        check_idx_files(spec, root)
        return
    if not download:
        raise _not_found(spec, root, f"{len(missing)} file(s) missing and download is off")
    cls = _dataset_class(spec)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(str(root), **_split(spec, train), download=True)
    except Exception as exc:  # torchvision raises URLError, RuntimeError, OSError, ... offline
        raise _not_found(spec, root, f"download failed: {exc}") from None
    missing = _missing_files(spec, root)
    if missing:
        raise _not_found(spec, root, f"after downloading, still missing {missing[0]}")
    check_idx_files(spec, root)


def check_idx_files(spec: DatasetSpec, root: Path) -> None:
    """MNIST-format files whose size does not match their header (a cut-off copy or download)
    are refused here, before training, naming the file; torchvision would fail later with a
    bare reshape error, or only at test time for the test files."""
    import numpy as np

    idx = [f for f in spec.expected_files if f.endswith("-ubyte")]
    counts = {}
    for rel in idx:
        path = root / rel
        with path.open("rb") as f:
            header = np.frombuffer(f.read(16), dtype=">i4")
        size = path.stat().st_size
        magic = int(header[0]) if len(header) else None
        if magic not in (2049, 2051) or len(header) < (2 if magic == 2049 else 4):
            raise DataNotFoundError(f"{path} is not an MNIST-format (idx) file: its header is wrong. "
                                    f"Delete it and run again to download it, or copy a good one there.")
        dims = [int(d) for d in header[1:2 if magic == 2049 else 4]]
        expected = 4 * (1 + len(dims)) + int(np.prod(dims))
        if size != expected:
            raise DataNotFoundError(f"{path} is {'truncated' if size < expected else 'longer than it should be'}: "
                                    f"its header promises {dims[0]:,} {'labels' if magic == 2049 else 'images'} "
                                    f"({expected:,} bytes), but the file has {size:,} bytes. Delete it and run "
                                    f"again to download it, or copy a good one there.")
        counts[rel.rsplit("/", 1)[-1].split("-")[0], magic] = dims[0]
    for split in ("train", "t10k"):
        n_img, n_lab = counts.get((split, 2051)), counts.get((split, 2049))
        if n_img is not None and n_lab is not None and n_img != n_lab:
            raise DataNotFoundError(f"the {spec.name} {split} files in {root} disagree: {n_img:,} images but "
                                    f"{n_lab:,} labels. Delete them and run again to download them.")


def load_split(spec: DatasetSpec, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read one split whole: (images uint8 (N,C,H,W), labels int64 (N,), class names)."""
    if spec.torchvision_class is None:
        return _load_image_folder(root, "train" if train else "test")
    missing = _missing_files(spec, root)
    if missing:
        raise _not_found(spec, root, f"{len(missing)} file(s) missing")
    ds = _dataset_class(spec)(str(root), **_split(spec, train), download=False)
    images = torch.as_tensor(ds.data)
    if images.ndim == 3:  # MNIST-like: (N, H, W)
        images = images.unsqueeze(1)
    elif images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):  # CIFAR: (N, H, W, C) numpy
        images = images.permute(0, 3, 1, 2)
    # else (N, C, H, W) already, as SVHN stores it
    targets = ds.targets if hasattr(ds, "targets") else ds.labels
    labels = torch.as_tensor(targets, dtype=torch.int64)
    classes = list(getattr(ds, "classes", None) or spec.class_names or [])
    return images.contiguous(), labels, classes


def _dataset_class(spec: DatasetSpec):
    """The spec's class: a name in torchvision.datasets, or the class itself."""
    if not isinstance(spec.torchvision_class, str):
        return spec.torchvision_class
    import torchvision.datasets as tvd

    return getattr(tvd, spec.torchvision_class)


def _split(spec: DatasetSpec, train: bool) -> dict:
    """torchvision's two ways to choose a split: train=True/False (MNIST, CIFAR), split= (SVHN)."""
    if spec.split_arg == "split":
        return {"split": "train" if train else "test"}
    return {"train": train}


# --- image folders -------------------------------------------------------------------------

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def image_folder_root(path: Path) -> Path:
    """The folder holding train/ and test/: `path` itself, its only sub-folder, or an archive's."""
    if path.is_file() and path.name.endswith(_ARCHIVE_SUFFIXES):
        path = _unpacked(path)
    if not path.is_dir():
        raise _not_found(DATASETS["image_folder"], path, "no such folder")
    for candidate in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    raise _not_found(DATASETS["image_folder"], path, "no train/ and test/ folders in it")


def _unpacked(archive: Path) -> Path:
    """Unpack an archive once into the cache, keyed by its path, size and modification time."""
    st = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "unpacked" / key
    if (target / ".complete").exists():
        return target
    tmp = target.with_name(key + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp, filter="data")
    (tmp / ".complete").touch()
    if target.exists():  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target


def image_folder_classes(root: Path) -> list[str]:
    root = image_folder_root(root)
    return sorted(p.name for p in (root / "train").iterdir() if p.is_dir())


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


def _image_files(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    files = []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            continue
        found = [(p, label) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:  # a class with no picture: a net with an output nobody can train or test
            raise ConfigError(f"the class folder {folder} holds no pictures ({', '.join(IMAGE_SUFFIXES)}); "
                              f"add pictures to it or remove it")
        files += found
    return files


def _load_image_folder(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    root = image_folder_root(root)
    classes = image_folder_classes(root)
    files = _image_files(root / split, classes)
    if not files:
        raise _not_found(DATASETS["image_folder"], root, f"no images under {root / split}")
    # Key the decoded tensors on every file's path, size and mtime so a changed folder is noticed.
    h = hashlib.sha1(str(root.resolve()).encode())
    for path, label in files:
        st = path.stat()
        h.update(f"{path.relative_to(root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    cached = cache_dir() / "image_folder" / f"{split}-{h.hexdigest()[:20]}.pt"
    if cached.exists():
        blob = torch.load(cached, weights_only=True)
        return blob["images"], blob["labels"], blob["classes"]
    images, labels = _decode_all(files)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    torch.save({"images": images, "labels": labels, "classes": classes}, tmp)
    os.replace(tmp, cached)  # atomic: a half-written cache file is never read
    return images, labels, classes


def _decode_all(files: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every picture once (the result is cached): PIL, since torchvision.io's decoders
    are deprecated. All pictures must share the first one's size; colour if it is colour."""
    import numpy as np

    with _open_picture(files[0][0]) as first:
        mode = "L" if first.mode in ("1", "L", "I;16", "I") else "RGB"
        size = first.size
    channels = 1 if mode == "L" else 3
    images = torch.empty((len(files), channels, size[1], size[0]), dtype=torch.uint8)
    for i, (path, _) in enumerate(files):
        with _open_picture(path) as img:
            if img.size != size:
                raise ConfigError(f"{path} is {img.size[0]}x{img.size[1]} pixels but the first image is "
                                  f"{size[0]}x{size[1]}; every image in an image folder must be one size")
            try:
                array = np.asarray(img.convert(mode))
            except OSError as exc:  # damaged or cut-off picture data
                raise ConfigError(f"{path} could not be decoded ({exc}); remove it from the image folder "
                                  f"or replace it") from None
        images[i] = torch.from_numpy(array.reshape(size[1], size[0], channels)).permute(2, 0, 1)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return images, labels


def _open_picture(path: Path):
    """PIL's image, or ConfigError naming a file that is not a picture (or too large to decode)."""
    from PIL import Image

    try:
        return Image.open(path)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise ConfigError(f"{path} is not a picture PIL can read ({exc}); remove it from the image "
                          f"folder or replace it") from None
