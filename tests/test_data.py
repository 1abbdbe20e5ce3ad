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


def _write_images(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str], suffix: str = ".png") -> None:
    """One PNG (or JPEG) per image under root/CLASS/, as ImageFolder expects; images (N, H, W[, 3]) uint8."""
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / names[label] / f"{i:04d}{suffix}")


def test_image_folder_with_train_and_test_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "eel"]
    train, test = rng.integers(0, 256, (12, 9, 7), dtype=np.uint8), rng.integers(0, 256, (4, 9, 7), dtype=np.uint8)
    train_labels, test_labels = np.arange(12) % 3, np.array([0, 2, 2, 0])
    _write_images(tmp_path / "set" / "train", train, train_labels, names)
    _write_images(tmp_path / "set" / "test", test, test_labels, names)
    ds = load_dataset(tmp_path / "set")
    assert ds.class_names == ("cat", "dog", "eel") and ds.test is not None
    assert ds.train.images.shape == (12, 1, 9, 7) and ds.test.images.shape == (4, 1, 9, 7)
    order = np.argsort(train_labels, kind="stable")  # read class by class, files sorted by name
    assert np.array_equal(ds.train.labels, train_labels[order])
    assert np.array_equal(np.round(ds.train.images[:, 0] * 255).astype(np.uint8), train[order])  # lossless PNG
    assert np.array_equal(ds.test.labels, np.sort(test_labels))


def test_image_folder_of_colour_files_reads_rgb_and_flat_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    _write_images(tmp_path / "flat", images, np.arange(6) % 2, ["a", "b"])
    ds = load_dataset(tmp_path / "flat")
    assert ds.train.images.shape == (6, 3, 8, 8) and ds.test is None and ds.class_names == ("a", "b")
    assert np.array_equal(np.round(ds.train.images[0] * 255).astype(np.uint8), images[0].transpose(2, 0, 1))
    smooth = np.broadcast_to(np.linspace(0, 255, 8, dtype=np.uint8)[None, None, :, None], (2, 8, 8, 3)).copy()
    _write_images(tmp_path / "flat", smooth, np.array([2, 2]), ["a", "b", "c"], suffix=".jpg")  # a JPEG class
    mixed = load_dataset(tmp_path / "flat")
    assert mixed.class_names == ("a", "b", "c") and mixed.train.images.shape == (8, 3, 8, 8)
    assert np.abs(mixed.train.images[6:] - smooth.transpose(0, 3, 1, 2) / 255).max() < 0.05  # JPEG is lossy


def test_image_folder_problems_name_the_file_and_the_fix(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    _write_images(tmp_path / "sizes", rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), np.arange(4) % 2, ["a", "b"])
    Image.fromarray(np.zeros((9, 8), dtype=np.uint8)).save(tmp_path / "sizes" / "b" / "odd.png")
    with pytest.raises(ValueError, match=r"odd\.png is 8x9 pixels but .* is 8x8; every image must have the same "
                                         r"size: resize them first"):
        load_dataset(tmp_path / "sizes")
    _write_images(tmp_path / "broken", rng.integers(0, 256, (2, 8, 8), dtype=np.uint8), np.arange(2), ["a", "b"])
    (tmp_path / "broken" / "b" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"bad\.png: not a readable image"):
        load_dataset(tmp_path / "broken")
    _write_images(tmp_path / "empty", rng.integers(0, 256, (2, 8, 8), dtype=np.uint8), np.zeros(2, int), ["a"])
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(ValueError, match=r"empty/b: the class folder holds no images"):
        load_dataset(tmp_path / "empty")
    _write_images(tmp_path / "extra" / "train", rng.integers(0, 256, (2, 8, 8), dtype=np.uint8), np.arange(2),
                  ["a", "b"])
    _write_images(tmp_path / "extra" / "test", rng.integers(0, 256, (1, 8, 8), dtype=np.uint8), np.zeros(1, int),
                  ["z"])
    with pytest.raises(ValueError, match="the test split has a class the train split lacks"):
        load_dataset(tmp_path / "extra")


def test_keras_npz_layout_reads_as_the_projects(tmp_path: Path) -> None:
    """keras.datasets' keys, channels-last colour and (N, 1) labels (CIFAR's) need no conversion."""
    rng = np.random.default_rng(0)
    x, x_test = rng.integers(0, 256, (12, 8, 8, 3), np.uint8), rng.integers(0, 256, (5, 8, 8, 3), np.uint8)
    y, y_test = rng.integers(0, 3, (12, 1)), rng.integers(0, 3, (5, 1))
    path = tmp_path / "keras.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    ds = load_dataset(path)
    assert ds.train.images.shape == (12, 3, 8, 8) and ds.test is not None and ds.test.images.shape == (5, 3, 8, 8)
    np.testing.assert_array_equal(ds.train.images, x.transpose(0, 3, 1, 2) / np.float32(255))
    np.testing.assert_array_equal(ds.train.labels, y[:, 0])
    np.testing.assert_array_equal(ds.test.labels, y_test[:, 0])
    both = tmp_path / "both.npz"
    np.savez(both, x_train=x, y_train=y, images=x, labels=y[:, 0])
    with pytest.raises(ValueError, match="both 'images'/'labels' and Keras'"):
        load_dataset(both)


def test_string_labels_name_the_classes(tmp_path: Path) -> None:
    images = np.zeros((4, 5, 5), np.uint8)
    path = tmp_path / "named.npz"
    np.savez(path, images=images, labels=np.array(["dog", "cat", "dog", "emu"]),
             test_images=images[:2], test_labels=np.array(["emu", "cat"]))
    ds = load_dataset(path)
    assert ds.class_names == ("cat", "dog", "emu")  # sorted, so the same names give the same indices
    np.testing.assert_array_equal(ds.train.labels, [1, 0, 1, 2])
    assert ds.test is not None
    np.testing.assert_array_equal(ds.test.labels, [2, 0])
    ordered = tmp_path / "ordered.npz"
    np.savez(ordered, images=images, labels=np.array(["dog", "cat", "dog", "cat"]), class_names=["dog", "cat"])
    np.testing.assert_array_equal(load_dataset(ordered).train.labels, [0, 1, 0, 1])
    stray = tmp_path / "stray.npz"
    np.savez(stray, images=images, labels=np.array(["dog", "cat", "dog", "cat"]),
             test_images=images[:1], test_labels=np.array(["yak"]))
    with pytest.raises(ValueError, match=r"test_labels holds label\(s\) \['yak'\] that are not in class_names"):
        load_dataset(stray)


def test_channel_counts_other_than_grey_rgb_rgba_are_refused_before_training(tmp_path: Path) -> None:
    rgba = tmp_path / "rgba.npz"
    np.savez(rgba, images=np.zeros((3, 16, 16, 4), np.uint8), labels=np.zeros(3, np.int64))
    assert load_dataset(rgba).train.images.shape == (3, 4, 16, 16)  # channels-last RGBA, as PIL writes it
    two = tmp_path / "two.npz"
    np.savez(two, images=np.zeros((3, 2, 16, 16), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"with 2 channels; cvae-sdk draws 1 \(grey\), 3 \(RGB\) or 4 \(RGBA\)"):
        load_dataset(two)
