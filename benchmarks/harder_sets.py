"""Harder labelled image sets, built from what is on the machine: nothing here is committed as data.

- ``glyphs``: ten letters drawn from every installed TrueType font (serif, sans, mono, condensed,
  bold, italic, light), upper and lower case in the same class (``a`` holds both "A" and "a"),
  with a random stroke width, a random affine map and an elastic distortion (Simard et al., 2003).
  Each class has several quite different modes, as real handwriting does.
- ``mnist-3k``: the first 3,000 MNIST training images with the full test split: a small data set.
- ``scenes``: 32x32 colour images of ten object shapes, each drawn at a random place, size and
  angle with a lit (graded) colour on a textured background (sky, grass, sand, water, a room).
  Each class has three modes, a colour range and a usual background of its own, and one image in
  three takes another class's background, so background alone does not give the class.
- ``photos``: 32x32 colour crops of ten photographs (``PHOTOS``, the sample images that ship
  inside scikit-image: an astronaut, a cat, coffee, the Hubble deep field, ...), one class per
  photograph, each crop a random square of a fifth to two thirds of the picture, flipped left to
  right at random and lightened or darkened a little. Natural textures and edges at every scale,
  and as many modes per class as a photograph has regions: the nearest to a set of colour photos
  that the machine can build without downloading one (``pip install scikit-image`` first).

All are written as the documented ``.npz`` (``images``, ``labels``, ``class_names``,
``test_images``, ``test_labels``), seeded, so a given seed gives the same bytes:

    python benchmarks/harder_sets.py glyphs --out /tmp/glyphs.npz
    python benchmarks/harder_sets.py mnist-3k --out /tmp/mnist-3k.npz --mnist ../shared/data/mnist
    python benchmarks/harder_sets.py scenes --out /tmp/scenes.npz
    python benchmarks/harder_sets.py photos --out /tmp/photos.npz
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


SCENE_CLASSES = ("disc", "ring", "square", "frame", "triangle", "star", "cross", "crescent", "diamond", "arrow")
SCENE_SIZE = 32
BACKGROUNDS = ("sky", "grass", "sand", "water", "room")


def shape_outline(name: str, angle: float) -> list[list[tuple[float, float]]]:
    """Polygons of one shape in unit coordinates (radius 1 about the origin), rotated by ``angle``."""
    def ring(radius: float, n: int = 48, phase: float = 0.0) -> list[tuple[float, float]]:
        t = phase + np.arange(n) * 2 * np.pi / n
        return list(zip(radius * np.cos(t), radius * np.sin(t), strict=True))

    polygons = {
        "disc": [ring(1.0)],
        "ring": [ring(1.0), ring(0.55)],
        "square": [ring(1.0, 4, np.pi / 4)],
        "frame": [ring(1.0, 4, np.pi / 4), ring(0.6, 4, np.pi / 4)],
        "triangle": [ring(1.0, 3, np.pi / 2)],
        "star": [[p for a, b in zip(ring(1.0, 5, np.pi / 2), ring(0.42, 5, np.pi / 2 + np.pi / 5), strict=True)
                  for p in (a, b)]],
        "cross": [[(-.3, -1), (.3, -1), (.3, -.3), (1, -.3), (1, .3), (.3, .3), (.3, 1), (-.3, 1), (-.3, .3),
                   (-1, .3), (-1, -.3), (-.3, -.3)]],
        "crescent": [ring(1.0), [(x + 0.45, y - 0.2) for x, y in ring(0.8)]],
        "diamond": [[(0, -1), (0.55, 0), (0, 1), (-0.55, 0)]],
        "arrow": [[(-1, -.25), (.2, -.25), (.2, -.7), (1, 0), (.2, .7), (.2, .25), (-1, .25)]],
    }[name]
    c, s = np.cos(angle), np.sin(angle)
    return [[(c * x - s * y, s * x + c * y) for x, y in poly] for poly in polygons]


def background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) float background in [0, 1] with texture and a random tint."""
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    noise = rng.normal(0, 1, (size // 4, size // 4))
    blotches = np.kron(noise, np.ones((4, 4)))[:size, :size]  # coarse texture
    fine = rng.normal(0, 1, (size, size))
    if kind == "sky":
        top, bottom = np.array([0.25, 0.45, 0.85]), np.array([0.75, 0.85, 0.95])
        image = top + (bottom - top) * yy[..., None] + 0.04 * blotches[..., None]
    elif kind == "grass":
        image = np.array([0.2, 0.5, 0.15]) + 0.08 * blotches[..., None] + 0.06 * fine[..., None]
    elif kind == "sand":
        image = np.array([0.8, 0.7, 0.45]) + 0.05 * blotches[..., None] + 0.04 * fine[..., None]
    elif kind == "water":
        waves = np.sin(2 * np.pi * (yy * rng.uniform(3, 6) + 0.1 * blotches))
        image = np.array([0.1, 0.3, 0.55]) + 0.07 * waves[..., None] + 0.03 * fine[..., None]
    else:  # a room: a flat wall of any colour, darker towards the corners
        wall = rng.uniform(0.3, 0.9, 3)
        vignette = 1.0 - 0.5 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
        image = wall * vignette[..., None] + 0.02 * fine[..., None]
    tint = rng.uniform(0.85, 1.15, 3)
    return np.clip(image * tint, 0.0, 1.0)


def render_scene(label: int, mode: int, rng: np.random.Generator, modes: np.ndarray) -> np.ndarray:
    """One (32, 32, 3) uint8 image of class ``label`` in colour mode ``mode``, drawn at 4x and reduced."""
    from PIL import Image, ImageDraw

    big = SCENE_SIZE * 4
    hue_centre, usual_background = modes[label, mode]
    kind = BACKGROUNDS[int(usual_background)] if rng.random() < 2 / 3 else BACKGROUNDS[int(rng.integers(5))]
    canvas = background(kind, big, rng)
    radius = rng.uniform(0.22, 0.4) * big
    centre = rng.uniform(radius * 0.8, big - radius * 0.8, 2)
    mask_image = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask_image)
    for i, poly in enumerate(shape_outline(SCENE_CLASSES[label], rng.uniform(0, 2 * np.pi))):
        points = [(centre[0] + radius * x, centre[1] + radius * y) for x, y in poly]
        draw.polygon(points, fill=255 if i == 0 else 0)  # later polygons cut holes
    mask = np.asarray(mask_image, dtype=np.float32)[..., None] / 255.0
    import colorsys

    hue = (hue_centre + rng.normal(0, 0.03)) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)))
    light = rng.uniform(0, 2 * np.pi)  # the side the light comes from
    yy, xx = np.meshgrid(np.arange(big), np.arange(big), indexing="ij")
    shade = 1.0 + 0.35 * (np.cos(light) * (xx - centre[0]) + np.sin(light) * (yy - centre[1])) / radius
    obj = np.clip(colour * shade[..., None], 0.0, 1.0)
    image = canvas * (1 - mask) + obj * mask
    small = Image.fromarray(np.round(image * 255).astype(np.uint8)).resize(
        (SCENE_SIZE, SCENE_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float32) + rng.normal(0, 3.0, (SCENE_SIZE, SCENE_SIZE, 3))
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def scenes(n_train: int = 10_000, n_test: int = 5_000, seed: int = 0) -> dict[str, np.ndarray]:
    """The colour scene set: balanced classes, channels-last uint8 images (N, 32, 32, 3)."""
    rng = np.random.default_rng(seed)
    modes = np.stack([rng.uniform(0, 1, (len(SCENE_CLASSES), 3)),                  # hue centre per mode
                      rng.integers(0, len(BACKGROUNDS), (len(SCENE_CLASSES), 3))], -1)  # usual background

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % len(SCENE_CLASSES)
        rng.shuffle(labels)
        images = np.stack([render_scene(int(y), int(rng.integers(3)), rng, modes) for y in labels])
        return images, labels.astype(np.int64)

    images, labels = draw(n_train)
    test_images, test_labels = draw(n_test)
    return {"images": images, "labels": labels, "class_names": np.array(SCENE_CLASSES),
            "test_images": test_images, "test_labels": test_labels}


PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
          "motorcycle_left.png", "retina.jpg", "rocket.jpg", "brick.png", "grass.png")  # the last two grey
PHOTO_SIZE = 32


def photo_files() -> list[Path]:
    """The photographs inside the installed scikit-image (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the photos set crops scikit-image's sample photographs: pip install scikit-image")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [name for name in PHOTOS if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"{folder} lacks {', '.join(missing)}: pip install --upgrade scikit-image")
    return [folder / name for name in PHOTOS]


def crop_photo(photo: np.ndarray, rng: np.random.Generator, size: int = PHOTO_SIZE) -> np.ndarray:
    """One (size, size, 3) uint8 crop: a random square, flipped at random, scaled in brightness, reduced."""
    from PIL import Image

    height, width, _ = photo.shape
    side = int(rng.uniform(0.2, 2 / 3) * min(height, width))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    square = photo[top:top + side, left:left + side]
    if rng.random() < 0.5:
        square = square[:, ::-1]
    small = Image.fromarray(np.ascontiguousarray(square)).resize((size, size), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float32) * rng.uniform(0.8, 1.2)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def photos(n_train: int = 10_000, n_test: int = 5_000, seed: int = 0, size: int = PHOTO_SIZE) -> dict[str, np.ndarray]:
    """The photo-crop set: balanced classes, channels-last uint8 images (N, size, size, 3)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pictures = [np.asarray(Image.open(path).convert("RGB")) for path in photo_files()]

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % len(PHOTOS)
        rng.shuffle(labels)
        return np.stack([crop_photo(pictures[y], rng, size) for y in labels]), labels.astype(np.int64)

    images, labels = draw(n_train)
    test_images, test_labels = draw(n_test)
    names = np.array([Path(name).stem.split("_")[0] for name in PHOTOS])
    return {"images": images, "labels": labels, "class_names": names,
            "test_images": test_images, "test_labels": test_labels}


SETS = ("glyphs", "mnist-3k", "scenes", "photos")


def build(which: str, mnist: str, seed: int = 0, size: int = PHOTO_SIZE, train_images: int = 10_000
          ) -> dict[str, np.ndarray]:
    """The arrays of the set ``which`` (one of ``SETS``); ``size`` and ``train_images`` shape ``photos`` only."""
    if which == "mnist-3k":
        return mnist_subset(mnist)
    builders = {"glyphs": lambda: glyphs(seed=seed), "scenes": lambda: scenes(seed=seed),
                "photos": lambda: photos(train_images, seed=seed, size=size)}
    return builders[which]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=SETS)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mnist", default="../shared/data/mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=PHOTO_SIZE, help="photos only: the crops' side in pixels")
    parser.add_argument("--train-images", type=int, default=10_000, help="photos only")
    args = parser.parse_args()
    arrays = build(args.which, args.mnist, args.seed, args.size, args.train_images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {arrays['images'].shape[0]} train, {arrays['test_images'].shape[0]} test images")


if __name__ == "__main__":
    main()
