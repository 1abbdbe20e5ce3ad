"""Labelled image datasets: MNIST-format IDX folders and ``.npz`` files, read with numpy alone, and
folders of image files, one sub-folder per class (torchvision's ``ImageFolder`` layout), read with Pillow.

Every loader returns the same :class:`LabeledImages`: float32 images shaped (N, C, H, W) in
[0, 1] and int64 labels (N,). Counts come from the files' headers, never from a constant, so the
24,345-image MNIST prefix, the full 60,000, Fashion-MNIST and KMNIST all read the same way.
"""

from __future__ import annotations

import gzip
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IDX_DTYPES: dict[int, np.dtype[Any]] = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: what samples and PNG grids can be; (N, H, W, 3) is channels-last colour
# The .npz key layouts read, as (train images, train labels, test images, test labels): this project's, and the one
# keras.datasets' load_data() returns (its mnist.npz holds exactly these keys)
NPZ_LAYOUTS = (("images", "labels", "test_images", "test_labels"), ("x_train", "y_train", "x_test", "y_test"))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GREY_MODES = ("1", "L", "LA", "I", "I;16")  # Pillow modes read as one channel; every other mode as RGB


@dataclass(frozen=True)
class LabeledImages:
    """Images (N, C, H, W) float32 in [0, 1] with int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, index: np.ndarray) -> LabeledImages:
        return LabeledImages(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Dataset:
    """A train split, an optional test split and the class names they share."""

    train: LabeledImages
    test: LabeledImages | None
    class_names: tuple[str, ...]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset(path: str | Path) -> Dataset:
    """Load a folder of IDX files, a folder of class folders of images, or an ``.npz`` file.

    >>> ds = load_dataset("../shared/data/mnist")   # the machine's MNIST: a prefix of the train split
    >>> ds.train.images.shape, ds.test.images.shape
    ((24345, 1, 28, 28), (10000, 1, 28, 28))
    """
    path = Path(path)
    if path.is_dir():
        if _find_idx(path, "train-images", "idx3-ubyte") is None and _class_folders(path):
            return load_image_folder(path)
        return load_idx_folder(path)
    if path.suffix == ".npz" and path.is_file():
        return load_npz(path)
    if not path.exists():
        raise ValueError(f"data path {str(path)!r} does not exist: pass a folder of IDX files, a folder with "
                         "one sub-folder of images per class, an .npz file, or the name 'mnist' to download it")
    raise ValueError(f"data path {str(path)!r} is neither a folder (of IDX files, or of class folders of images) "
                     "nor an .npz file")


# --- IDX -------------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped); the shape comes from its header."""
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4].hex() or 'empty'}; "
                         "expected 0000 08 followed by the number of dimensions)")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header promises shape {shape} ({expected} data bytes) but the "
                         f"file holds {len(raw) - header}; the file is truncated or corrupt")
    data: np.ndarray = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def load_idx_folder(folder: Path) -> Dataset:
    """Load ``train-*`` (required) and ``t10k-*`` (optional) IDX pairs from ``folder``."""
    splits: dict[str, LabeledImages] = {}
    for split, prefix in SPLIT_PREFIXES.items():
        images_path = _find_idx(folder, f"{prefix}-images", "idx3-ubyte")
        labels_path = _find_idx(folder, f"{prefix}-labels", "idx1-ubyte")
        if images_path is None and labels_path is None and split == "test":
            continue
        if images_path is None or labels_path is None:
            missing = f"{prefix}-images-idx3-ubyte" if images_path is None else f"{prefix}-labels-idx1-ubyte"
            raise ValueError(f"{folder}: missing {missing}[.gz]; an IDX folder needs the train-images and "
                             "train-labels pair (and optionally the t10k pair)")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise ValueError(f"{folder}: {prefix} images must be 3-d (N, H, W) and labels 1-d, "
                             f"got {images.shape} and {labels.shape}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{folder}: {images_path.name} holds {images.shape[0]} images but "
                             f"{labels_path.name} holds {labels.shape[0]} labels; they must match")
        splits[split] = LabeledImages(_to_unit_float(images[:, None]), labels.astype(np.int64))
    num_classes = int(max(int(s.labels.max(initial=0)) for s in splits.values())) + 1
    for name, split_data in splits.items():
        _check_labels(split_data.labels, num_classes, f"{folder} ({name})")
    return Dataset(splits["train"], splits.get("test"),
                   tuple(str(i) for i in range(num_classes)), str(folder))


# --- folders of images -------------------------------------------------------------------------

def load_image_folder(folder: Path) -> Dataset:
    """Load one sub-folder of images per class (``folder/CLASS/*.png``), as torchvision's ``ImageFolder``.

    With ``folder/train/CLASS/...`` (and optionally ``folder/test/CLASS/...``) the two splits come from
    there. Class names are the sub-folder names, sorted; every image must have the same size. Images
    are grey (one channel) when every file is, else RGB; transparency is dropped.
    """
    root = folder / "train" if (folder / "train").is_dir() and _class_folders(folder / "train") else folder
    class_names = tuple(p.name for p in _class_folders(root))
    files = {name: _image_files(root / name) for name in class_names}
    test_root = folder / "test" if root != folder and (folder / "test").is_dir() else None
    test_files: dict[str, list[Path]] = {}
    if test_root is not None:
        for sub in _class_folders(test_root):
            if sub.name not in class_names:
                raise ValueError(f"{sub}: the test split has a class the train split lacks; the classes are "
                                 f"{', '.join(class_names)}")
            test_files[sub.name] = _image_files(sub)
    try:
        from PIL import Image
    except ImportError as err:
        raise ValueError("reading a folder of images needs Pillow: pip install 'cvae-sdk[pil]'") from err
    every = [p for paths in [*files.values(), *test_files.values()] for p in paths]
    size, grey = None, True
    for path in every:  # headers only: sizes and modes are checked before any pixel is decoded
        try:
            with Image.open(path) as image:
                found, mode = image.size, image.mode
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{path}: not a readable image ({err}); remove it or convert it to PNG") from err
        size = size or found
        if found != size:
            raise ValueError(f"{path} is {found[0]}x{found[1]} pixels but {every[0]} is {size[0]}x{size[1]}; "
                             "every image must have the same size: resize them first")
        grey = grey and mode in GREY_MODES

    def read(paths: dict[str, list[Path]]) -> LabeledImages:
        mode = "L" if grey else "RGB"
        images, labels = [], []
        for label, name in enumerate(class_names):
            for path in paths.get(name, []):
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert(mode), dtype=np.uint8)  # (H, W) or (H, W, 3)
                images.append(pixels[None] if grey else pixels.transpose(2, 0, 1))
                labels.append(label)
        return LabeledImages(_to_unit_float(np.stack(images)), np.asarray(labels, dtype=np.int64))

    test = read(test_files) if test_files else None
    return Dataset(read(files), test, class_names, str(folder))


def _class_folders(folder: Path) -> list[Path]:
    """The visible sub-folders of ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (sub-folders included), sorted; a class with none is refused."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not p.name.startswith("."))
    if not found:
        raise ValueError(f"{folder}: the class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def _find_idx(folder: Path, stem: str, kind: str) -> Path | None:
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            candidate = folder / f"{stem}{sep}{kind}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({err}); download it again") from err


# --- npz -------------------------------------------------------------------------------------

def load_npz(path: Path) -> Dataset:
    """Load ``images`` (N,H,W), (N,C,H,W) or (N,H,W,C), ``labels`` (N,) and optional ``class_names``.

    Optional ``test_images``/``test_labels`` become the test split. Keras' keys (``x_train``, ``y_train``,
    ``x_test``, ``y_test``) read the same. Labels are integers, or strings naming the classes (sorted, unless
    ``class_names`` orders them); Keras' (N, 1) labels read as (N,).
    """
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic not in ZIP_MAGICS:
        raise ValueError(f"{path}: not an .npz file (an .npz is a zip archive of .npy arrays, as numpy.savez "
                         "writes it; this file starts with other bytes)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: truncated or corrupt .npz file ({err}); write or copy it again") from err
    with archive:
        keys = set(archive.files)
        images, labels, test_images, test_labels = _npz_layout(path, keys)
        arrays = {key: _npz_array(archive, key, path) for key in keys}
        names = tuple(str(c) for c in arrays["class_names"].tolist()) if "class_names" in keys else None
        train_labels, names = _label_indices(path, arrays[labels], names, labels)
        train = _npz_split(path, arrays[images], train_labels, f"{images}/{labels}")
        class_names = names or tuple(str(i) for i in range(int(train.labels.max(initial=0)) + 1))
        test = None
        if test_images in keys and test_labels in keys:
            indices, _ = _label_indices(path, arrays[test_labels], class_names, test_labels)
            test = _npz_split(path, arrays[test_images], indices, f"{test_images}/{test_labels}")
    for name, split in (("train", train), ("test", test)):
        if split is not None:
            _check_labels(split.labels, len(class_names), f"{path} ({name})")
    if test is not None and test.image_shape != train.image_shape:
        raise ValueError(f"{path}: test images {test.image_shape} differ in shape from train images "
                         f"{train.image_shape}")
    return Dataset(train, test, class_names, str(path))


def _npz_layout(path: Path, keys: set[str]) -> tuple[str, str, str, str]:
    """The key layout of NPZ_LAYOUTS this archive uses, or a ValueError naming what is missing."""
    found = [layout for layout in NPZ_LAYOUTS if {layout[0], layout[1]} <= keys]
    if len(found) > 1:
        raise ValueError(f"{path}: holds both 'images'/'labels' and Keras' 'x_train'/'y_train'; keep one pair")
    if not found:
        missing = {"images", "labels"} - keys
        raise ValueError(f"{path}: missing key(s) {sorted(missing)}; an .npz dataset needs 'images' and 'labels' "
                         f"(or Keras' 'x_train' and 'y_train'), found {sorted(keys)}")
    return found[0]


def _label_indices(path: Path, labels: np.ndarray, names: tuple[str, ...] | None,
                   key: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Labels (N,) or (N, 1) as (N,), string labels as class indices, and the class names: ``names``, the
    sorted string labels, or None (numbered from the labels once they are checked)."""
    if labels.ndim == 2 and labels.shape[1] == 1:  # Keras' CIFAR labels are (N, 1)
        labels = labels[:, 0]
    if labels.dtype.kind in "US":  # strings name the classes
        text = labels.astype(str)
        class_names = names if names is not None else tuple(sorted(set(text.tolist())))
        unknown = sorted(set(text.tolist()) - set(class_names))
        if unknown:
            raise ValueError(f"{path}: {key} holds label(s) {unknown[:5]} that are not in class_names "
                             f"{list(class_names)[:10]}; add them there or fix the labels")
        index = {name: i for i, name in enumerate(class_names)}
        return np.array([index[t] for t in text.tolist()], dtype=np.int64).reshape(labels.shape), class_names
    return labels, names


def _npz_array(archive: Any, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except (OSError, EOFError, zipfile.BadZipFile) as err:  # a member cut short or damaged
        raise ValueError(f"{path}: truncated or corrupt .npz file (array {key!r}: {err}); write or copy it "
                         "again") from err
    except ValueError as err:  # object arrays need pickle, which is never allowed
        raise ValueError(f"{path}: array {key!r} holds pickled Python objects, which are refused; "
                         "save plain numeric (or string) arrays") from err


def _npz_split(path: Path, images: np.ndarray, labels: np.ndarray, what: str) -> LabeledImages:
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim == 4 and images.shape[3] in CHANNELS and images.shape[1] not in CHANNELS:
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # channels-last (N, H, W, C), as PIL writes
    if images.ndim != 4:
        raise ValueError(f"{path}: {what} images must be shaped (N,H,W), (N,C,H,W) or (N,H,W,C), "
                         f"got {images.shape}")
    if images.shape[1] not in CHANNELS:
        raise ValueError(f"{path}: the images ({what}) are shaped {images.shape}, with {images.shape[1]} channels; "
                         "cvae-sdk draws 1 (grey), 3 (RGB) or 4 (RGBA) channels, first or last: "
                         "(N,C,H,W) or (N,H,W,C)")
    if labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: {what} hold {images.shape[0]} images but labels are shaped "
                         f"{labels.shape}; labels must be (N,) with N matching")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be integers, got dtype {labels.dtype}")
    return LabeledImages(_to_unit_float(images), labels.astype(np.int64))


# --- shared checks -----------------------------------------------------------------------------

def _to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 0-255 or float 0-1 -> float32 0-1; anything else is refused rather than guessed."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(images.dtype, np.floating):
        out = images.astype(np.float32)
        if not np.isfinite(out).all() or out.min(initial=0.0) < 0.0 or out.max(initial=0.0) > 1.0:
            raise ValueError("float images must be finite and lie in [0, 1]; scale uint8 data to 0-1 "
                             "or pass it as uint8")
        return out
    raise ValueError(f"images must be uint8 (0-255) or float (0-1), got dtype {images.dtype}")


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size == 0:
        raise ValueError(f"{where}: the split is empty")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{where}: labels span [{low}, {high}] but there are {num_classes} classes; "
                         f"labels must lie in [0, {num_classes - 1}]")


def open_dataset(spec: str | Path, mirror: str | None = None, cache_dir: Path | None = None) -> Dataset:
    """Load a path, or fetch a named dataset (``"mnist"``) into the cache first."""
    from cvae_sdk.download import REMOTE_DATASETS, fetch

    if isinstance(spec, str) and spec in REMOTE_DATASETS and not Path(spec).exists():
        return load_dataset(fetch(REMOTE_DATASETS[spec], cache_dir=cache_dir, mirror=mirror))
    return load_dataset(spec)
