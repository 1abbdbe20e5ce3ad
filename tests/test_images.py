"""PNG grids written with numpy+zlib decode correctly in an independent reader (Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvae_sdk.images import encode_png, labelled_grid, text_image, write_png


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_round_trip(tmp_path: Path, channels: int) -> None:
    image = np.random.default_rng(0).integers(0, 256, (7, 5, channels), dtype=np.uint8)
    write_png(tmp_path / "x.png", image)
    decoded = np.asarray(Image.open(tmp_path / "x.png"))
    assert np.array_equal(decoded.reshape(7, 5, channels), image)


def test_grid_places_images_and_labels() -> None:
    images = np.ones((6, 1, 4, 4), dtype=np.float32)
    grid = labelled_grid(images, ["0", "1"], 3)
    assert grid.dtype == np.uint8 and grid.shape[2] == 1
    assert (grid == 255).sum() > 6 * 16  # all cells plus label glyphs
    with pytest.raises(ValueError, match="grid needs"):
        labelled_grid(images, ["0"], 3)


def test_text_renders_known_and_unknown_characters() -> None:
    assert text_image("7", 12).max() == 255
    assert text_image("é", 12).shape == text_image("?", 12).shape


def test_encode_rejects_wrong_input() -> None:
    with pytest.raises(TypeError, match="uint8"):
        encode_png(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="channels"):
        encode_png(np.zeros((2, 2, 2), dtype=np.uint8))
