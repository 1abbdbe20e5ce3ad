"""Image grids with row labels and titles, and PNG files written with numpy and zlib alone (no Pillow)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cvae_sdk.atomic import atomic_path
from cvae_sdk.checks import positive_int, to_uint8

# A 3x5 pixel font: each glyph is five rows of three bits, top row first.
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", "A": "010101111101101", "B": "110101110101110",
    "C": "011100100100011", "D": "110101101101110", "E": "111100110100111", "F": "111100110100100",
    "G": "011100101101011", "H": "101101111101101", "I": "111010010010111", "J": "001001001101010",
    "K": "101101110101101", "L": "100100100100111", "M": "101111111101101", "N": "110101101101101",
    "O": "010101101101010", "P": "110101110100100", "Q": "010101101110011", "R": "110101110101101",
    "S": "011100010001110", "T": "111010010010010", "U": "101101101101111", "V": "101101101101010",
    "W": "101101111111101", "X": "101101010101101", "Y": "101101010010010", "Z": "111001010100111",
    " ": "000000000000000", "-": "000000111000000", "_": "000000000000111", ".": "000000000000010",
    "/": "001001010100100", ":": "000010000010000", "?": "111001011000010",
}
GLYPH_SCALE, PAD = 2, 2


def text_image(text: str, height: int) -> np.ndarray:
    """Render ``text`` (upper-cased; unknown characters as '?') as a uint8 (height, width) strip."""
    glyphs = [_FONT.get(ch, _FONT["?"]) for ch in text.upper()]
    s = GLYPH_SCALE
    width = max(1, len(glyphs) * 4 * s)
    strip = np.zeros((height, width), dtype=np.uint8)
    top = max(0, (height - 5 * s) // 2)
    for i, bits in enumerate(glyphs):
        glyph = np.array([int(b) for b in bits], dtype=np.uint8).reshape(5, 3) * 255
        big = np.kron(glyph, np.ones((s, s), dtype=np.uint8))[: height - top]
        strip[top:top + big.shape[0], i * 4 * s:i * 4 * s + 3 * s] = big
    return strip


def make_image_grid(images: np.ndarray, columns: int, *, row_labels: Sequence[str] | None = None,
                    scale: int = 1, titles: Sequence[tuple[str, int]] | None = None) -> np.ndarray:
    """Tile images (N, C, H, W) into a uint8 (height, width, C) grid, ready for :func:`write_png`.

    Images fill rows of ``columns`` cells in order; the last row is padded with blank cells.
    ``scale`` enlarges every image by an integer factor (nearest neighbour). ``row_labels`` (one per
    row) are written left of the rows; ``titles`` are written above, each ``(text, span)`` over the
    next ``span`` columns. The numpy counterpart of diffusers' ``make_image_grid``.

    >>> make_image_grid(np.ones((5, 1, 28, 28), np.float32), 3, row_labels=["a", "b"], scale=2).shape
    (118, 188, 1)
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    columns, scale = positive_int(columns, "columns"), positive_int(scale, "scale")
    n, c, h, w = images.shape
    rows = max(1, -(-n // columns))
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{n} images in rows of {columns} make {rows} rows, but {len(row_labels)} row labels "
                         "were given")
    if titles is not None and sum(span for _, span in titles) > columns:
        raise ValueError(f"titles span {sum(span for _, span in titles)} columns; the grid has {columns}")
    pixels = to_uint8(images).transpose(0, 2, 3, 1)                       # (N, H, W, C)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)      # (N, H*s, W*s, C)
        h, w = h * scale, w * scale
    cell_h, cell_w = h + PAD, w + PAD
    text_h = 5 * GLYPH_SCALE + 2 * PAD
    label_w = max((text_image(label, cell_h).shape[1] for label in row_labels), default=0) + 2 * PAD \
        if row_labels else 0
    top = text_h if titles else 0
    grid = np.zeros((top + rows * cell_h + PAD, label_w + columns * cell_w + PAD, c), dtype=np.uint8)
    x = label_w + PAD
    for text, span in titles or ():
        strip = text_image(text, text_h)[:, :span * cell_w - PAD]
        grid[:text_h, x:x + strip.shape[1]] = strip[:, :, None]
        x += span * cell_w
    for r, label in enumerate(row_labels or ()):
        strip = text_image(label, cell_h)
        y0 = top + r * cell_h + PAD // 2
        grid[y0:y0 + cell_h, PAD:PAD + strip.shape[1]] = strip[:, :, None]
    for i in range(n):
        y0 = top + (i // columns) * cell_h + PAD
        x0 = label_w + (i % columns) * cell_w + PAD
        grid[y0:y0 + h, x0:x0 + w] = pixels[i]
    return grid


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) or (H, W, C) image with C in {1, 3, 4}."""
    if image.dtype != np.uint8:
        raise TypeError(f"PNG needs uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    h, w, c = image.shape
    color_type = {1: 0, 3: 2, 4: 6}.get(c)
    if color_type is None:
        raise ValueError(f"PNG needs 1, 3 or 4 channels, got {c}")
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), image.reshape(h, w * c)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + chunk(b"IEND", b""))


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write ``image`` as a PNG atomically."""
    data = encode_png(image)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
