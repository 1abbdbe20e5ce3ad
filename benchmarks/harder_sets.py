"""Harder labelled image sets, built from what is on the machine: nothing here is committed as data.

- ``glyphs``: ten letters drawn from every installed TrueType font (serif, sans, mono, condensed,
  bold, italic, light), upper and lower case in the same class (``a`` holds both "A" and "a"),
  with a random stroke width, a random affine map and an elastic distortion (Simard et al., 2003).
  Each class has several quite different modes, as real handwriting does.
- ``mnist-3k``: the first 3,000 MNIST training images with the full test split: a small data set.

Both are written as the documented ``.npz`` (``images``, ``labels``, ``class_names``,
``test_images``, ``test_labels``), seeded, so a given seed gives the same bytes:

    python benchmarks/harder_sets.py glyphs --out /tmp/glyphs.npz
    python benchmarks/harder_sets.py mnist-3k --out /tmp/mnist-3k.npz --mnist ../shared/data/mnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

GLYPH_CLASSES = ("a", "b", "d", "e", "g", "h", "n", "q", "r", "t")  # upper and lower case differ
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
SIZE = 28
RENDER = 64  # glyphs are drawn large, distorted, then reduced to SIZE with antialiasing


def installed_fonts() -> list[Path]:
    """Every TrueType/OpenType font file on the machine, sorted (math fonts left out)."""
    found = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    fonts = [p for p in found if "math" not in p.name.lower()]
    if not fonts:
        raise SystemExit("no TrueType fonts found under /usr/share/fonts; apt-get install fonts-dejavu-core")
    return fonts


def render_glyph(char: str, font_path: Path, rng: np.random.Generator) -> np.ndarray:
    """One distorted glyph as float32 (SIZE, SIZE) in [0, 1]."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), int(RENDER * rng.uniform(0.6, 0.8)))
    canvas = Image.new("L", (RENDER, RENDER), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = int(rng.integers(0, 4))  # stroke width: thin to heavy
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font, stroke_width=stroke)
    origin = ((RENDER - (right - left)) / 2 - left, (RENDER - (bottom - top)) / 2 - top)
    draw.text(origin, char, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    # random affine about the centre: rotation, anisotropic scale, shear, shift (inverse map for PIL)
    angle, shear = np.deg2rad(rng.uniform(-15, 15)), rng.uniform(-0.3, 0.3)
    scale = rng.uniform(0.8, 1.1, size=2)
    forward = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ \
        np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
    inverse = np.linalg.inv(forward)
    centre = np.array([RENDER / 2, RENDER / 2])
    shift = rng.uniform(-3, 3, size=2)
    offset = centre - inverse @ (centre + shift)
    coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    warped = canvas.transform(canvas.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    small = np.asarray(warped.resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    return np.clip(elastic(small, rng), 0.0, 1.0)


def elastic(image: np.ndarray, rng: np.random.Generator, alpha: float = 1.8, sigma: float = 4.0) -> np.ndarray:
    """Simard-style elastic distortion: a smoothed random displacement field, bilinear resampling."""
    h, w = image.shape
    radius = int(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()

    def smooth(field: np.ndarray) -> np.ndarray:
        field = np.apply_along_axis(lambda r: np.convolve(r, taps, mode="same"), 0, field)
        return np.apply_along_axis(lambda r: np.convolve(r, taps, mode="same"), 1, field)

    dy = smooth(rng.uniform(-1, 1, (h, w)))
    dx = smooth(rng.uniform(-1, 1, (h, w)))
    norm = alpha / max(1e-8, float(np.abs(np.stack([dy, dx])).max()))
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return bilinear(image, yy + dy * norm, xx + dx * norm)


def bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    h, w = image.shape
    padded = np.pad(image, 1)
    y, x = np.clip(y + 1, 0, h), np.clip(x + 1, 0, w)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
    bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def glyphs(n_train: int = 10_000, n_test: int = 5_000, seed: int = 0) -> dict[str, np.ndarray]:
    """The glyph set: balanced classes, each image an (upper or lower case, font) draw."""
    fonts = installed_fonts()
    rng = np.random.default_rng(seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % len(GLYPH_CLASSES)
        rng.shuffle(labels)
        images = np.empty((n, SIZE, SIZE), dtype=np.uint8)
        for i, label in enumerate(labels):
            letter = GLYPH_CLASSES[label]
            char = letter.upper() if rng.random() < 0.5 else letter
            glyph = render_glyph(char, fonts[int(rng.integers(len(fonts)))], rng)
            images[i] = np.round(glyph * 255).astype(np.uint8)
        return images, labels.astype(np.int64)

    images, labels = draw(n_train)
    test_images, test_labels = draw(n_test)
    return {"images": images, "labels": labels, "class_names": np.array(GLYPH_CLASSES),
            "test_images": test_images, "test_labels": test_labels}


def mnist_subset(mnist: str, n_train: int = 3_000) -> dict[str, np.ndarray]:
    """The first ``n_train`` MNIST training images, and the whole test split."""
    from cvae_sdk.data import load_dataset

    data = load_dataset(mnist)
    assert data.test is not None, "the MNIST folder needs its t10k files"

    def to_uint8(images: np.ndarray) -> np.ndarray:
        return np.round(images[:, 0] * 255).astype(np.uint8)

    return {"images": to_uint8(data.train.images[:n_train]), "labels": data.train.labels[:n_train],
            "test_images": to_uint8(data.test.images), "test_labels": data.test.labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["glyphs", "mnist-3k"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mnist", default="../shared/data/mnist")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    arrays = glyphs(seed=args.seed) if args.which == "glyphs" else mnist_subset(args.mnist)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {arrays['images'].shape[0]} train, {arrays['test_images'].shape[0]} test images")


if __name__ == "__main__":
    main()
