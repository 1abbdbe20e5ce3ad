"""Shared fixtures: tiny synthetic datasets, a tiny trained run and its exported artifact.

Everything is real (real files, a real training run, a real onnxruntime session), only small.
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY_SHAPE = (1, 12, 12)
TINY_CLASSES = 3


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/NAME.py`` as a module (its ``main`` not run), able to import the scripts beside it."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def make_images(n: int, shape: tuple[int, int, int], classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, C, H, W) with a bright class-specific bar plus noise, and labels (N,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    c, h, w = shape
    images = (rng.random((n, c, h, w)) * 40).astype(np.uint8)
    band = max(1, h // classes)
    for i, label in enumerate(labels):
        row = (label * h) // classes
        left, length = rng.integers(0, w // 2), rng.integers(w // 3, w)  # style the latent can carry
        images[i, :, row:row + band, left:left + length] = rng.integers(150, 256)
    return images, labels.astype(np.int64)


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_folder(folder: Path, n_train: int = 240, n_test: int = 60, shape: tuple[int, int] = (12, 12),
                     classes: int = TINY_CLASSES, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_images(n, (1, *shape), classes, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images[:, 0], gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
    return folder


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    images, labels = make_images(300, TINY_SHAPE, TINY_CLASSES, 0)
    test_images, test_labels = make_images(90, TINY_SHAPE, TINY_CLASSES, 1)
    np.savez(path, images=images, labels=labels, test_images=test_images, test_labels=test_labels,
             class_names=np.array(["top", "middle", "bottom"]))
    return path


def tiny_config(data: Path, out: Path, **overrides: object):  # -> TrainConfig
    from cvae_sdk.backends import TrainConfig

    settings = dict(data=str(data), out=str(out), latent_dim=4, hidden=32, conv_channels=4, epochs=2,
                    batch_size=32, lr=3e-3, seed=0, adversarial_epochs=0)  # the phase: tests/test_adversarial.py
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_run(tiny_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cvae_sdk_training.trainer import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(tiny_npz, out), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cvae_sdk_training.export import export_generator

    out = tmp_path_factory.mktemp("models") / "tiny.onnx"
    export_generator(tiny_run, out, allow_low_fidelity=True)  # a 2-epoch run: mechanics, not quality
    return out


@pytest.fixture(scope="session")
def tiny_classifier(tiny_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cvae_sdk_training.classifier import train_classifier

    out = tmp_path_factory.mktemp("clf") / "clf.onnx"
    scores = train_classifier(str(tiny_npz), out, epochs=4, progress=False)
    assert scores["test_accuracy"] > 0.9
    return out


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST folder {MNIST_DIR} is absent (CI has it beside the clone as ../shared)")
    return MNIST_DIR
