"""Data loaders on real files: IDX folders (raw and gzipped), .npz, and malformed inputs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import make_images, write_idx, write_idx_folder

from cvae_sdk.data import load_dataset, read_idx


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_reads_counts_from_header(tmp_path: Path, gz: bool) -> None:
    ds = load_dataset(write_idx_folder(tmp_path, n_train=37, n_test=11, shape=(9, 7), gz=gz))
    assert ds.train.images.shape == (37, 1, 9, 7)
    assert ds.test is not None and ds.test.images.shape == (11, 1, 9, 7)
    assert ds.train.images.dtype == np.float32
    assert 0.0 <= ds.train.images.min() and ds.train.images.max() <= 1.0
    assert ds.class_names == ("0", "1", "2")
    assert ds.train.labels.dtype == np.int64


def test_idx_folder_without_test_split(tmp_path: Path) -> None:
    write_idx_folder(tmp_path)
    for f in tmp_path.glob("t10k-*"):
        f.unlink()
    assert load_dataset(tmp_path).test is None


def test_real_mnist_prefix_has_24345_train_images(mnist_dir: Path) -> None:
    ds = load_dataset(mnist_dir)
    assert ds.train.images.shape == (24345, 1, 28, 28)
    assert ds.test is not None and len(ds.test) == 10000
    assert np.bincount(ds.train.labels).tolist() == [2406, 2770, 2381, 2524, 2386, 2181, 2401, 2524, 2328, 2444]


def test_truncated_idx_is_named(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((5, 4, 4), dtype=np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(path)


def test_truncated_gzip_is_named(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x-idx3-ubyte.gz", np.zeros((5, 4, 4), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_wrong_magic_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(path)


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8), gz=False)
    with pytest.raises(ValueError, match="images but .* labels"):
        load_dataset(tmp_path)


def test_missing_labels_file(tmp_path: Path) -> None:
    write_idx_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="missing train-labels"):
        load_dataset(tmp_path)


def test_npz_shapes_and_names(tiny_npz: Path) -> None:
    ds = load_dataset(tiny_npz)
    assert ds.train.images.shape == (300, 1, 12, 12)
    assert ds.class_names == ("top", "middle", "bottom")
    assert ds.test is not None and len(ds.test) == 90


def test_npz_float_images_and_nhw(tmp_path: Path) -> None:
    images, labels = make_images(20, (1, 5, 6), 2, 0)
    path = tmp_path / "f.npz"
    np.savez(path, images=images[:, 0].astype(np.float64) / 255.0, labels=labels)
    ds = load_dataset(path)
    assert ds.train.images.shape == (20, 1, 5, 6) and ds.num_classes == 2
    np.testing.assert_allclose(ds.train.images[:, 0], images[:, 0] / 255.0, atol=1e-6)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"images": np.zeros((4, 3, 3), np.uint8)}, "missing key"),
    ({"images": np.zeros((4, 3, 3), np.uint8), "labels": np.zeros(3, np.int64)}, "labels must be"),
    ({"images": np.zeros((4, 3, 3), np.uint8), "labels": np.array([0, 1, 2, 3]),
      "class_names": np.array(["a", "b"])}, "labels span"),
    ({"images": np.zeros((4, 3, 3), np.uint8), "labels": np.array([0, -1, 0, 0])}, "labels span"),
    ({"images": np.full((4, 3, 3), 2.0), "labels": np.zeros(4, np.int64)}, r"\[0, 1\]"),
    ({"images": np.zeros((4, 3, 3), np.uint8), "labels": np.zeros(4, np.float32)}, "integers"),
])
def test_bad_npz_is_explained(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_dataset(path)


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npz"
    np.savez(path, images=np.zeros((2, 3, 3), np.uint8), labels=np.array([0, 1], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_dataset(path)


def test_missing_and_wrong_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    other = tmp_path / "file.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="neither"):
        load_dataset(other)


def test_gzip_detected_by_content(tmp_path: Path) -> None:
    raw = write_idx(tmp_path / "a-idx3-ubyte", np.arange(8, dtype=np.uint8).reshape(2, 2, 2), gz=False)
    zipped = tmp_path / "b-idx3-ubyte"
    zipped.write_bytes(gzip.compress(raw.read_bytes()))
    np.testing.assert_array_equal(read_idx(raw), read_idx(zipped))


def test_truncated_and_foreign_npz_files_are_named(tmp_path: Path) -> None:
    whole = tmp_path / "whole.npz"
    np.savez(whole, images=np.zeros((50, 8, 8), np.uint8), labels=np.zeros(50, np.int64))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(whole.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"truncated\.npz: truncated or corrupt \.npz file"):
        load_dataset(truncated)
    foreign = tmp_path / "random.npz"
    foreign.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(ValueError, match=r"random\.npz: not an \.npz file"):
        load_dataset(foreign)


def test_channels_last_colour_is_read_as_colour(tmp_path: Path) -> None:
    """(N, H, W, 3), the layout of PIL and most datasets, reads as (N, 3, H, W) colour images."""
    images = np.random.default_rng(0).integers(0, 256, (6, 10, 12, 3), dtype=np.uint8)
    path = tmp_path / "hwc.npz"
    np.savez(path, images=images, labels=np.array([0, 1, 0, 1, 0, 1]))
    ds = load_dataset(path)
    assert ds.train.image_shape == (3, 10, 12)
    np.testing.assert_allclose(ds.train.images, images.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)
