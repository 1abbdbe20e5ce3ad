"""PNG grids written with numpy+zlib decode correctly in an independent reader (Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvae_sdk import make_image_grid
from cvae_sdk.images import encode_png, text_image, write_png


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_round_trip(tmp_path: Path, channels: int) -> None:
    image = np.random.default_rng(0).integers(0, 256, (7, 5, channels), dtype=np.uint8)
    write_png(tmp_path / "x.png", image)
    decoded = np.asarray(Image.open(tmp_path / "x.png"))
    assert np.array_equal(decoded.reshape(7, 5, channels), image)


def test_grid_places_images_and_labels() -> None:
    images = np.ones((6, 1, 4, 4), dtype=np.float32)
    grid = make_image_grid(images, 3, row_labels=["0", "1"])
    assert grid.dtype == np.uint8 and grid.shape[2] == 1
    assert (grid == 255).sum() > 6 * 16  # all cells plus label glyphs
    with pytest.raises(ValueError, match="make 2 rows, but 1 row labels"):
        make_image_grid(images, 3, row_labels=["0"])


def test_grid_scales_pads_and_titles() -> None:
    images = np.random.default_rng(0).random((5, 3, 4, 4), dtype=np.float32)
    grid = make_image_grid(images, 2, scale=3)                    # 3 rows, the last one half blank
    cell = 4 * 3 + 2
    assert grid.shape == (3 * cell + 2, 2 * cell + 2, 3)
    first = grid[2:14, 2:14]                                      # image 0, each pixel a 3x3 block
    assert np.array_equal(first, np.kron(make_image_grid(images[:1], 1)[2:6, 2:6].transpose(2, 0, 1),
                                         np.ones((3, 3), np.uint8)).transpose(1, 2, 0))
    assert grid[2 * cell + 2:, cell + 2:].max() == 0              # the padded cell is blank
    titled = make_image_grid(images[:4], 4, titles=[("real", 2), ("generated", 2)])
    assert titled.shape[0] > make_image_grid(images[:4], 4).shape[0]
    assert titled[:12].max() == 255                               # the titles are drawn above the cells
    with pytest.raises(ValueError, match="titles span 5 columns"):
        make_image_grid(images[:4], 4, titles=[("real", 2), ("generated", 3)])


def test_text_renders_known_and_unknown_characters() -> None:
    assert text_image("7", 12).max() == 255
    assert text_image("é", 12).shape == text_image("?", 12).shape


def test_encode_rejects_wrong_input() -> None:
    with pytest.raises(TypeError, match="uint8"):
        encode_png(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="channels"):
        encode_png(np.zeros((2, 2, 2), dtype=np.uint8))
