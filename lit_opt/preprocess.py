"""Turn any picture into what a model's dataset looks like (numpy + PIL; torch only for the tensor).

    pre = preprocess("my_seven.png", model)      # or a PIL image, or a numpy array
    pre.tensor    # float (1, C, H, W), normalized with the dataset's mean/std: the net's input
    pre.picture   # uint8 (H, W) or (H, W, 3): the same picture before normalization ("what the net sees")
    pre.inverted  # True when the picture was dark-on-light and was negated

`model` is a ClassifierModule or its `data_info` dict (dataset name, input shape, class
names, mean, std: what every lit_opt checkpoint records). The recipe follows the dataset:

- **mnist**: the textbook MNIST recipe (LeCun et al.): light ink on black, cropped to the
  ink's bounding box, scaled (anti-aliased) so that its longer side is 20 px keeping the
  aspect ratio, and pasted into 28x28 so that the ink's centre of mass is at pixel
  (14, 14) (index coordinates, the mean over MNIST's training set). When centring by mass
  would push ink past the frame (a very lopsided drawing), the box is shifted just
  enough to keep all of it.
- **fashion_mnist**: the object cropped and scaled so that its longer side fills 28 px,
  keeping the aspect ratio, centred, light on black (Zalando's recipe).
- **colour datasets** (CIFAR, colour image folders) and other shapes: a plain anti-aliased
  resize to the input size.

Polarity comes from the picture's border (its median is the background): dark-on-light
drawings and photos are negated, light-on-dark ones kept; the background level is
subtracted and the contrast stretched so the strongest ink is 255, as in MNIST. A
transparent background (RGBA, LA, palette transparency) is filled with the colour that
contrasts with the opaque ink, so black strokes on transparency and white strokes on
transparency both work. A picture with no ink (an empty canvas) raises `EmptyImageError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lit_opt.errors import LitOptError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

MNIST_BOX = 20  # the digit's longer side, pixels
MNIST_CENTRE = 14.0  # centre of mass, index coordinates (mean over MNIST's training set: 14.00, 14.01)
# Ink this faint (of 255, after background subtraction) or fainter everywhere means "nothing drawn".
MIN_CONTRAST = 24.0
FAINT = 0.1  # ink under this fraction of the strongest is background (compression ringing, texture)


class ImageError(LitOptError, ValueError):
    """A picture could not be read or used (the message names it and says why)."""


class EmptyImageError(ImageError):
    """The picture has no ink: nothing to classify."""


@dataclass
class Preprocessed:
    """A picture ready for a model: `tensor` is its input, `picture` what it shows."""

    tensor: Any  # torch.Tensor (1, C, H, W), normalized
    picture: np.ndarray  # uint8 (H, W) for one channel, (H, W, 3) for colour
    inverted: bool  # the source was dark-on-light and was negated


def data_info_of(model) -> dict:
    """The `data_info` dict of a ClassifierModule (or the dict itself)."""
    if isinstance(model, dict):
        return model
    hparams = getattr(model, "hparams", None)
    info = None if hparams is None else hparams.get("data_info")
    if not info:
        raise TypeError(f"expected a ClassifierModule or a data_info dict, got {type(model).__name__}")
    return info


# --- reading -------------------------------------------------------------------------------


def _name(image) -> str:
    return str(image) if isinstance(image, (str, os.PathLike)) else f"the {type(image).__name__} picture"


def open_image(path: Union[str, os.PathLike]) -> Image.Image:
    """Read an image file, turned upright by its EXIF orientation; ImageError if it cannot be."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP, ...)") from None
    except Image.DecompressionBombError:  # PIL's guard against a small file that unpacks to gigabytes
        raise ImageError(f"{path}: the picture is too large to decode safely (over "
                         f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels); scale it down first") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged image data
        raise ImageError(f"{path}: the image could not be decoded ({exc})") from None


def to_float(image: ImageLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Any picture -> (pixels float32 (H, W, 1 or 3) in [0, 255], alpha float32 (H, W) in [0, 1] or None)."""
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image)
    if isinstance(image, Image.Image):
        return _pil_to_float(image)
    if isinstance(image, np.ndarray):
        return _array_to_float(image)
    raise ImageError(f"cannot read a picture from a {type(image).__name__}; give a file path, "
                     f"a PIL image or a numpy array")


def _pil_to_float(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _array_to_float(np.asarray(im))
    if im.mode == "1":
        im = im.convert("L")
    if im.mode == "LA":
        a = np.asarray(im, dtype=np.float32)
        return a[..., :1], a[..., 1] / 255.0
    if im.mode == "PA":
        im = im.convert("RGBA")
    if im.mode not in ("L", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.mode else "RGB")
    a = np.asarray(im, dtype=np.float32)
    if im.mode == "L":
        return a[..., None], None
    if im.mode == "RGB":
        return a, None
    return a[..., :3], a[..., 3] / 255.0


def _array_to_float(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or min(a.shape[:2]) < 1:
        raise ImageError(f"a picture array must be (H, W), (H, W, C) or (C, H, W) with 1-4 channels, "
                         f"got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.float32) * 255.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ImageError("the picture array holds NaN or infinite values")
        if a.max(initial=0) <= 1.0:  # floats in [0, 1]
            a = a * 255.0
    elif a.dtype == np.uint8:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) * (255.0 / 65535.0 if a.max(initial=0) > 255 else 1.0)
    else:
        raise ImageError(f"cannot read a picture from a numpy array of {a.dtype}")
    a = np.clip(a, 0.0, 255.0)
    c = a.shape[2]
    if c == 1 or c == 3:
        return a, None
    return a[..., :c - 1], a[..., c - 1] / 255.0


def flatten_alpha(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Composite over the background that contrasts with the opaque part (black strokes on
    transparency land on white, white strokes on black). Returns (H, W, C) float."""
    if alpha is None or alpha.min() >= 1.0:
        return pixels
    a = alpha[..., None]
    weight = float(alpha.sum())
    lum = luminance(pixels)
    ink_level = float((lum * alpha).sum() / weight) if weight > 0 else 0.0
    background = 255.0 if ink_level < 127.5 else 0.0
    return pixels * a + background * (1.0 - a)


def luminance(pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W): ITU-R 601 luma for colour (PIL's "L"), the channel itself for gray."""
    if pixels.shape[2] == 1:
        return pixels[..., 0]
    return pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114


def border(a: np.ndarray) -> np.ndarray:
    """The pixels of the picture's outer ring (2% of the size, at least 1 px)."""
    h, w = a.shape[:2]
    k = max(1, round(0.02 * min(h, w)))
    if 2 * k >= min(h, w):
        return a.reshape(-1, *a.shape[2:])
    return np.concatenate([a[:k].reshape(-1, *a.shape[2:]), a[-k:].reshape(-1, *a.shape[2:]),
                           a[k:-k, :k].reshape(-1, *a.shape[2:]), a[k:-k, -k:].reshape(-1, *a.shape[2:])])


def ink_map(image: ImageLike) -> tuple[np.ndarray, bool]:
    """Grayscale ink, light on black like MNIST: (H, W) float in [0, 255], and whether the
    picture was dark-on-light. The background (the border's median) becomes 0, the
    border's noise level is subtracted, ink fainter than 10% of the strongest is dropped,
    and the strongest ink is stretched to 255.
    EmptyImageError when nothing stands out from the background."""
    pixels, alpha = to_float(image)
    lum = luminance(flatten_alpha(pixels, alpha))
    ring = border(lum)
    background = float(np.median(ring))
    inverted = background > 127.5
    ink = (background - lum) if inverted else (lum - background)
    # The border's noise level, robustly (ink touching the border does not count): 4 sigma
    # estimated from the median absolute deviation; 0 for a clean canvas.
    noise = 4 * 1.4826 * float(np.median(np.abs(ring - background)))
    ink = np.clip(ink - noise, 0.0, None)
    peak = float(ink.max(initial=0.0))
    if peak < MIN_CONTRAST:
        raise EmptyImageError(f"{_name(image)} is empty: nothing stands out from its "
                              f"{'light' if inverted else 'dark'} background (draw something first)")
    ink[ink < FAINT * peak] = 0.0  # JPEG ringing, paper texture: not ink
    return ink * (255.0 / peak), inverted


def ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), exclusive, of the pixels with any ink."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def centre_of_mass(ink: np.ndarray) -> tuple[float, float]:
    """(row, column) of the ink's centre of mass, index coordinates."""
    total = float(ink.sum())
    rows = float((ink.sum(axis=1) * np.arange(ink.shape[0])).sum()) / total
    cols = float((ink.sum(axis=0) * np.arange(ink.shape[1])).sum()) / total
    return rows, cols


def resample_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix that resamples one axis. Shrinking: each output pixel is the
    mean of its exact footprint (area resampling: anti-aliased, and the ink's mass scales
    by exactly n_out / n_in). Enlarging: linear interpolation between pixel centres."""
    if n_out == n_in:
        return np.eye(n_in, dtype=np.float64)
    if n_out < n_in:
        edges = np.arange(n_out + 1) * (n_in / n_out)  # output pixel i covers [edges[i], edges[i+1])
        lo, hi = edges[:-1, None], edges[1:, None]
        j = np.arange(n_in)[None, :]
        overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
        return overlap * (n_out / n_in)
    x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    left = np.floor(x).astype(int)
    right = np.minimum(left + 1, n_in - 1)
    frac = x - left
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), left] += 1.0 - frac
    w[np.arange(n_out), right] += frac
    return w


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased resize of a float (H, W) array to size=(height, width), see resample_weights."""
    rows = resample_weights(a.shape[0], size[0])
    cols = resample_weights(a.shape[1], size[1])
    out = rows @ a.astype(np.float64) @ cols.T
    return np.clip(out, 0.0, 255.0).astype(np.float32)


def _fit(ink: np.ndarray, longest: int) -> np.ndarray:
    """Crop to the ink's bounding box and scale so its longer side is `longest`, keeping the
    aspect ratio (the shorter side rounded to whole pixels, at least 1)."""
    top, left, bottom, right = ink_box(ink)
    h, w = bottom - top, right - left
    scale = longest / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return _resize(ink[top:bottom, left:right], size)


def _paste(canvas: np.ndarray, part: np.ndarray, top: int, left: int) -> np.ndarray:
    h, w = part.shape
    canvas[top:top + h, left:left + w] = part
    return canvas


def mnist_picture(ink: np.ndarray, size: int = 28) -> np.ndarray:
    """MNIST: fit the ink's box into 20x20 keeping its aspect, centre of mass at (14, 14) in 28x28."""
    digit = _fit(ink, round(MNIST_BOX * size / 28))
    h, w = digit.shape
    cy, cx = centre_of_mass(digit)
    centre = MNIST_CENTRE * size / 28
    top = min(max(round(centre - cy), 0), size - h)  # clamp: never cut ink off
    left = min(max(round(centre - cx), 0), size - w)
    return _paste(np.zeros((size, size), np.float32), digit, top, left)


def fashion_picture(ink: np.ndarray, size: int = 28) -> np.ndarray:
    """Fashion-MNIST: the object's box scaled so its longer side fills the frame, centred."""
    obj = _fit(ink, size)
    h, w = obj.shape
    return _paste(np.zeros((size, size), np.float32), obj, (size - h) // 2, (size - w) // 2)


def picture_for(image: ImageLike, data_info: dict) -> tuple[np.ndarray, bool]:
    """The uint8 picture the model's dataset would hold: (H, W) or (H, W, 3); and `inverted`."""
    c, h, w = (int(s) for s in data_info["input_shape"])
    dataset = data_info.get("dataset", "")
    if c == 1 and dataset in ("mnist", "fashion_mnist") and h == w:
        ink, inverted = ink_map(image)
        pic = mnist_picture(ink, h) if dataset == "mnist" else fashion_picture(ink, h)
        return np.rint(pic).astype(np.uint8), inverted
    # Colour datasets and image folders: a plain resize to the input size.
    pixels, alpha = to_float(image)
    pixels = flatten_alpha(pixels, alpha)
    if c == 1:
        pixels = luminance(pixels)[..., None]
    elif pixels.shape[2] == 1:
        pixels = np.repeat(pixels, c, axis=2)
    if float(pixels.max() - pixels.min()) < 1.0:
        raise EmptyImageError(f"{_name(image)} is empty: every pixel has the same colour")
    channels = [_resize(pixels[..., k], (h, w)) for k in range(pixels.shape[2])]
    pic = np.rint(np.stack(channels, axis=-1)).astype(np.uint8)
    return (pic[..., 0] if c == 1 else pic), False


def preprocess(image: ImageLike, model) -> Preprocessed:
    """Any picture -> the model's normalized input and the picture it shows (see the module doc)."""
    import torch

    from lit_opt.data import normalize  # the very function training batches go through

    info = data_info_of(model)
    pic, inverted = picture_for(image, info)
    chw = pic[None] if pic.ndim == 2 else pic.transpose(2, 0, 1)
    tensor = normalize(torch.from_numpy(np.ascontiguousarray(chw))[None], info["mean"], info["std"])
    return Preprocessed(tensor=tensor, picture=pic, inverted=inverted)
