"""Preprocessing: strokes drawn here at many sizes, positions, thicknesses and both polarities
come out as MNIST digits are made (box in 20x20 keeping the aspect ratio, centre of mass at
(14, 14), ink mass kept up to the rescaling); Fashion-MNIST and colour recipes; every input
kind (path, PIL, numpy; gray, RGB, RGBA); empty and unreadable pictures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lit_opt.preprocess import (
    EmptyImageError,
    ImageError,
    centre_of_mass,
    ink_box,
    ink_map,
    picture_for,
    preprocess,
)

MNIST = {"dataset": "mnist", "input_shape": [1, 28, 28], "num_classes": 10,
         "class_names": [str(i) for i in range(10)], "mean": [0.1307], "std": [0.3081]}
FASHION = {**MNIST, "dataset": "fashion_mnist", "mean": [0.2860], "std": [0.3530]}
CIFAR = {"dataset": "cifar10", "input_shape": [3, 32, 32], "num_classes": 10,
         "class_names": list("abcdefghij"), "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}

# Digit-like strokes in unit coordinates (polylines; "ellipse" draws an outline).
SHAPES = {
    "one": [[(0.5, 0.0), (0.5, 1.0)]],
    "seven": [[(0.0, 0.0), (0.8, 0.0), (0.35, 1.0)]],
    "zero": "ellipse",
    "two": [[(0.05, 0.25), (0.4, 0.0), (0.8, 0.2), (0.7, 0.5), (0.0, 1.0), (0.9, 1.0)]],
    "four": [[(0.6, 1.0), (0.6, 0.0), (0.0, 0.65), (0.9, 0.65)]],
    "bar": [[(0.0, 0.5), (1.0, 0.5)]],  # wide and flat: aspect ratio far from 1
    "slash": [[(0.9, 0.0), (0.1, 1.0)]],
}


def draw(shape: str, canvas: tuple[int, int], box: tuple[float, float, float, float], width: int,
         dark_on_light: bool) -> Image.Image:
    """A grayscale picture with `shape` drawn inside box=(left, top, w, h) with a round pen."""
    bg, ink = (255, 0) if dark_on_light else (0, 255)
    im = Image.new("L", canvas, bg)
    d = ImageDraw.Draw(im)
    left, top, w, h = box
    if SHAPES[shape] == "ellipse":
        d.ellipse([left, top, left + w, top + h], outline=ink, width=width)
        return im
    for line in SHAPES[shape]:
        pts = [(left + x * w, top + y * h) for x, y in line]
        d.line(pts, fill=ink, width=width, joint="curve")
        r = width / 2
        for x, y in (pts[0], pts[-1]):  # round caps
            d.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    return im


def ink_of(im: Image.Image, dark_on_light: bool) -> np.ndarray:
    a = np.asarray(im, dtype=np.float64)
    return 255 - a if dark_on_light else a


def cases(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = list(SHAPES)
    for i in range(n):
        cw, ch = (int(v) for v in rng.integers(40, 700, size=2))
        shape = names[i % len(names)]
        side = rng.uniform(0.15, 0.7) * min(cw, ch)
        aspect = rng.uniform(0.5, 1.0) if shape not in ("bar", "one") else 1.0
        w, h = side * aspect, side
        left, top = rng.uniform(0.05 * cw, cw - w - 0.05 * cw), rng.uniform(0.05 * ch, ch - h - 0.05 * ch)
        width = max(1, int(side * rng.uniform(0.04, 0.2)))
        yield pytest.param(shape, (cw, ch), (left, top, w, h), width, bool(i % 2),
                           id=f"{shape}-{cw}x{ch}-w{width}-{'dark' if i % 2 else 'light'}")


@pytest.mark.parametrize("shape, canvas, box, width, dark_on_light", list(cases()))
def test_mnist_recipe_on_drawn_strokes(shape, canvas, box, width, dark_on_light):
    im = draw(shape, canvas, box, width, dark_on_light)
    source = ink_of(im, dark_on_light)
    pic, inverted = picture_for(im, MNIST)
    assert pic.shape == (28, 28) and pic.dtype == np.uint8
    assert inverted == dark_on_light
    out = pic.astype(np.float64)

    # Centre of mass within 1 px of (14, 14).
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1, (cy, cx)

    # Box within 20x20, its longer side 20, aspect ratio kept to a pixel.
    top, left, bottom, right = ink_box(out)
    h, w = bottom - top, right - left
    t0, l0, b0, r0 = ink_box(source)
    h0, w0 = b0 - t0, r0 - l0
    scale = 20 / max(h0, w0)
    assert max(h, w) <= 20 and max(h, w) >= 19
    assert abs(h - h0 * scale) <= 1 and abs(w - w0 * scale) <= 1, ((h, w), (h0 * scale, w0 * scale))

    # Ink mass preserved up to the rescaling (each axis scaled by its own rounded size).
    sy, sx = max(1, round(h0 * scale)) / h0, max(1, round(w0 * scale)) / w0
    expected = source.sum() * sy * sx
    assert out.sum() == pytest.approx(expected, rel=0.03)
    assert out.max() >= 200  # full-strength ink, like MNIST's


def test_polarity_does_not_change_the_result():
    box = (40, 30, 90, 150)
    light = picture_for(draw("seven", (200, 220), box, 12, False), MNIST)[0]
    dark = picture_for(draw("seven", (200, 220), box, 12, True), MNIST)[0]
    np.testing.assert_array_equal(light, dark)


def test_grey_paper_and_faint_pencil_are_stretched_to_full_contrast():
    im = draw("four", (300, 300), (60, 50, 150, 200), 14, True)
    a = np.asarray(im, dtype=np.float64)
    grey = Image.fromarray(np.where(a > 128, 200, 120).astype(np.uint8))  # grey ink on grey paper
    out = picture_for(grey, MNIST)[0]
    ref = picture_for(im, MNIST)[0]
    assert out.max() == 255
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 2


def test_lopsided_drawing_keeps_all_its_ink_in_the_frame():
    im = Image.new("L", (200, 200), 0)
    d = ImageDraw.Draw(im)
    d.rectangle([20, 20, 180, 60], fill=255)  # heavy top bar
    d.line([(20, 20), (20, 180)], fill=255, width=2)  # thin left stem
    pic = picture_for(im, MNIST)[0]
    top, left, bottom, right = ink_box(pic)
    assert top >= 0 and left >= 0 and bottom <= 28 and right <= 28
    assert max(bottom - top, right - left) == 20
    scale = 20 / 161
    assert pic.astype(float).sum() == pytest.approx(np.asarray(im, float).sum() * scale**2, rel=0.05)


@pytest.mark.parametrize("kind", ["path_rgb", "path_rgba_black_on_clear", "path_rgba_white_on_clear",
                                  "path_rgba_opaque", "path_jpeg", "pil_rgb", "numpy_gray", "numpy_float",
                                  "numpy_bool", "numpy_rgb", "numpy_chw", "palette", "la"])
def test_every_input_kind_gives_the_same_picture(kind, tmp_path):
    gray = draw("two", (160, 120), (40, 10, 70, 100), 10, True)  # black on white
    ref = picture_for(gray, MNIST)[0]
    a = np.asarray(gray)
    ink = 255 - a
    rgb = Image.merge("RGB", [gray] * 3)
    if kind == "path_rgb":
        rgb.save(tmp_path / "x.png")
        image = tmp_path / "x.png"
    elif kind == "path_rgba_black_on_clear":  # black strokes, transparent background
        Image.fromarray(np.dstack([np.zeros_like(a)] * 3 + [ink])).save(tmp_path / "x.png")
        image = str(tmp_path / "x.png")
    elif kind == "path_rgba_white_on_clear":  # white strokes, transparent background
        Image.fromarray(np.dstack([np.full_like(a, 255)] * 3 + [ink])).save(tmp_path / "x.png")
        image = tmp_path / "x.png"
    elif kind == "path_rgba_opaque":
        rgb.convert("RGBA").save(tmp_path / "x.png")
        image = tmp_path / "x.png"
    elif kind == "path_jpeg":
        rgb.save(tmp_path / "x.jpg", quality=95)
        image = tmp_path / "x.jpg"
    elif kind == "pil_rgb":
        image = rgb
    elif kind == "numpy_gray":
        image = a
    elif kind == "numpy_float":
        image = a.astype(np.float32) / 255
    elif kind == "numpy_bool":
        image = a > 127
    elif kind == "numpy_rgb":
        image = np.asarray(rgb)
    elif kind == "numpy_chw":
        image = np.asarray(rgb).transpose(2, 0, 1).copy()
    elif kind == "palette":
        image = rgb.convert("P")
    else:
        image = Image.merge("LA", [gray, Image.new("L", gray.size, 255)])
    out = picture_for(image, MNIST)[0]
    tolerance = 40 if kind == "path_jpeg" else 1  # JPEG ringing shifts a few edge values
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= tolerance
    if kind == "path_jpeg":
        assert np.abs(out.astype(float) - ref).mean() < 2


def test_tensor_is_the_picture_normalized_like_training_batches():
    import torch

    from lit_opt.data import normalize

    pre = preprocess(draw("zero", (100, 100), (20, 20, 50, 60), 8, True), MNIST)
    assert pre.tensor.shape == (1, 1, 28, 28) and pre.tensor.dtype == torch.float32
    expected = normalize(torch.from_numpy(pre.picture)[None, None], MNIST["mean"], MNIST["std"])
    torch.testing.assert_close(pre.tensor, expected)
    assert pre.inverted


def test_fashion_recipe_fills_the_frame_keeping_the_aspect_ratio():
    im = Image.new("RGB", (400, 300), "white")  # a product photo: dark object on white
    ImageDraw.Draw(im).rectangle([100, 50, 219, 249], fill=(90, 40, 40))  # 120 wide, 200 tall
    pic, inverted = picture_for(im, FASHION)
    assert inverted
    top, left, bottom, right = ink_box(pic)
    assert bottom - top == 28
    assert abs((right - left) - 28 * 120 / 200) <= 1
    assert abs((left + right) / 2 - 14) <= 0.5


def test_colour_datasets_get_a_plain_resize():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    pre = preprocess(photo, CIFAR)
    assert pre.picture.shape == (32, 32, 3) and pre.tensor.shape == (1, 3, 32, 32)
    assert not pre.inverted
    # Plain resize: colours stay where they were (a red left half stays red).
    half = np.zeros((50, 80, 3), np.uint8)
    half[:, :40, 0] = 255
    half[:, 40:, 2] = 255
    pic = preprocess(half, CIFAR).picture
    assert pic[:, :14, 0].min() == 255 and pic[:, :14, 2].max() == 0
    assert pic[:, 18:, 2].min() == 255 and pic[:, 18:, 0].max() == 0


@pytest.mark.parametrize("picture", [Image.new("L", (280, 280), 255), Image.new("L", (280, 280), 0),
                                     Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
                                     np.full((28, 28), 0.5, np.float32)], ids=["white", "black", "clear", "grey"])
def test_an_empty_canvas_is_reported_not_classified(picture):
    with pytest.raises(EmptyImageError, match="empty"):
        picture_for(picture, MNIST)
    with pytest.raises(EmptyImageError, match="empty"):
        picture_for(picture, CIFAR)


def test_faint_speck_on_noisy_paper_is_empty_but_a_stroke_is_not():
    rng = np.random.default_rng(1)
    paper = np.clip(rng.normal(200, 4, size=(200, 200)), 0, 255)
    with pytest.raises(EmptyImageError):
        ink_map(paper.astype(np.uint8))
    paper[90:110, 40:160] -= 120
    ink, inverted = ink_map(paper.astype(np.uint8))
    assert inverted and ink.max() == 255
    assert ink_box(ink) == (90, 40, 110, 160)


def test_unreadable_pictures_raise_image_error(tmp_path):
    (tmp_path / "not.png").write_bytes(b"hello, not an image")
    good = tmp_path / "good.png"
    draw("one", (50, 50), (10, 10, 20, 30), 4, True).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    for path, what in ((tmp_path / "missing.png", "no such file"), (tmp_path / "not.png", "not an image"),
                       (tmp_path / "cut.png", "could not be decoded"), (tmp_path, "folder")):
        with pytest.raises(ImageError, match=what):
            picture_for(path, MNIST)
    with pytest.raises(ImageError, match="shape"):
        picture_for(np.zeros((2, 3, 4, 5)), MNIST)
