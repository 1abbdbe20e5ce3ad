"""Sample quality with onnxruntime and numpy: label fidelity, realism (Fréchet distance) and diversity.

The same measures score a run's reconstructions of real training images (encoder mean, then
decoder): when those already sit far from the floor, the decoder limits quality, not the prior.

An ONNX classifier trained on the train split judges generated samples:
- fidelity: the share it classifies as the requested label (overall, per class, confusion matrix);
- realism: Fréchet distance between its penultimate features of generated and real test images,
  per class and averaged, beside the real-vs-real floor (two seeded halves of the test split);
- diversity: mean pairwise pixel L2 distance within a label, relative to real test images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cvae_sdk.checks import to_uint8
from cvae_sdk.data import Dataset, LabeledImages
from cvae_sdk.generator import Generator, shipped_file
from cvae_sdk.images import make_image_grid

CLASSIFIER_KEY = "cvae_sdk_classifier"
SHIPPED_CLASSIFIER = "mnist-classifier.onnx"
RUN_CLASSIFIER = "classifier.onnx"  # the evaluation classifier a training run keeps beside its checkpoints
DIVERSITY_SUBSAMPLE = 500
BATCH = 2048
CHANCE_MULTIPLE = 2  # a classifier must read real test images at least twice as often as chance


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 of the test split (8-bit pixels and labels), or of train when there is no test."""
    split = dataset.test if dataset.test is not None else dataset.train
    hasher = hashlib.sha256()
    hasher.update(to_uint8(split.images).tobytes())
    hasher.update(split.labels.astype("<i8").tobytes())
    return hasher.hexdigest()


@dataclass(frozen=True)
class EvalClassifier:
    """An ONNX classifier with ``logits`` and ``features`` outputs and its metadata."""

    session: ort.InferenceSession
    meta: dict[str, Any]
    path: Path

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> EvalClassifier:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"classifier {str(path)!r} does not exist; train one with `cvae-sdk classifier`")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types name no fix
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{path} is not a readable ONNX classifier ({first[:160]}); pass a file written by "
                             "`cvae-sdk classifier`") from err
        props = session.get_modelmeta().custom_metadata_map
        if CLASSIFIER_KEY not in props:
            raise ValueError(f"{path} is not a cvae-sdk evaluation classifier (no {CLASSIFIER_KEY!r} metadata)")
        return cls(session, json.loads(props[CLASSIFIER_KEY]), path)

    def class_accuracy(self, num_classes: int) -> np.ndarray:
        """(K,) accuracy on real held-out images per class, from the metadata (overall, where only that is known)."""
        per_class = self.meta.get("val_accuracy_per_class")
        if isinstance(per_class, list) and len(per_class) == num_classes:
            return np.asarray(per_class, dtype=np.float64)
        overall = self.meta.get("test_accuracy", self.meta.get("val_accuracy", 1.0))
        return np.full(num_classes, float(overall))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Class logits (N, K) for images (N, C, H, W)."""
        out = [self.session.run(["logits"], {"images": np.ascontiguousarray(images[start:start + BATCH],
                                                                          dtype=np.float32)})[0]
               for start in range(0, images.shape[0], BATCH)]
        return np.concatenate(out).astype(np.float64)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted labels (N,) and penultimate features (N, F) for images (N, C, H, W)."""
        preds, feats = [], []
        for start in range(0, images.shape[0], BATCH):
            chunk = np.ascontiguousarray(images[start:start + BATCH], dtype=np.float32)
            logits, features = self.session.run(["logits", "features"], {"images": chunk})
            preds.append(logits.argmax(1))
            feats.append(features.astype(np.float64))
        return np.concatenate(preds), np.concatenate(feats)


    def check_fits(self, sample_shape: tuple[int, ...], class_names: Sequence[str], test: LabeledImages) -> float:
        """Refuse a classifier, model and data that do not belong together; returns the accuracy on ``test``.

        The image shapes and the classes must agree, and the classifier must read the real test images
        well above chance: a letters classifier on digits scores samples as nonsense, not as bad."""
        mine = tuple(self.meta.get("sample_shape", sample_shape))
        if tuple(test.image_shape) != tuple(sample_shape):
            raise ValueError(f"the data's images are {_shape(test.image_shape)} but the model draws "
                             f"{_shape(sample_shape)}; evaluate it on data of its own image size")
        if mine != tuple(sample_shape):
            raise ValueError(f"classifier {self.path} reads {_shape(mine)} images but the model draws "
                             f"{_shape(sample_shape)}; train one on this data with `cvae-sdk classifier`")
        names = [str(c) for c in self.meta.get("class_names", class_names)]
        if len(names) != len(class_names) or names != [str(c) for c in class_names]:
            raise ValueError(f"classifier {self.path} knows classes {names[:12]} but the model draws "
                             f"{list(class_names)[:12]}; pass a classifier trained on the model's classes")
        predicted, _ = self.predict(test.images)
        accuracy = float((predicted == test.labels).mean())
        if accuracy < CHANCE_MULTIPLE / len(class_names):
            raise ValueError(f"classifier {self.path} recognises only {accuracy:.1%} of the real test images of "
                             f"{len(class_names)} classes (chance: {1 / len(class_names):.1%}): it was not trained "
                             "on this data. Train one with `cvae-sdk classifier --data PATH`")
        return accuracy


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in shape)


def find_classifier(source: Path, dataset: Dataset, explicit: Path | None, run_dir: Path | None) -> EvalClassifier:
    """``--classifier``, else the one a run keeps beside its checkpoints (``run_dir``, for an artifact the
    run it was exported from, if that folder is still here), else the shipped one if it fits the data."""
    if explicit is not None:
        return EvalClassifier.load(explicit)
    for folder in (source if source.suffix != ".onnx" else None, run_dir):
        if folder is not None and run_classifier_path(Path(folder)).is_file():
            return EvalClassifier.load(run_classifier_path(Path(folder)))
    return default_classifier(dataset)


def run_classifier_path(source: Path) -> Path:
    """Where a run keeps its evaluation classifier, for a run folder or a checkpoint inside one."""
    return (source if source.is_dir() else source.parent) / RUN_CLASSIFIER


def default_classifier(dataset: Dataset) -> EvalClassifier:
    """The shipped MNIST classifier, if it was trained for this data; else a clear error."""
    path = shipped_file(SHIPPED_CLASSIFIER)
    if path is not None:
        clf = EvalClassifier.load(path)
        if clf.meta.get("data_fingerprint") == dataset_fingerprint(dataset):
            return clf
    raise ValueError(f"no evaluation classifier matches {dataset.source}; train one with "
                     "`cvae-sdk classifier --data PATH --out clf.onnx` and pass --classifier clf.onnx")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2), with numpy only (no scipy)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(s_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T    # S_a^1/2
    cross = np.linalg.eigvalsh(root_a @ s_b @ root_a)              # eig(S_a^1/2 S_b S_a^1/2)
    trace_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_sqrt)


def mean_pairwise_distance(images: np.ndarray, rng: np.random.Generator) -> float:
    """Mean L2 distance between distinct pairs of (a seeded subsample of) images."""
    flat = images.reshape(images.shape[0], -1).astype(np.float64)
    if flat.shape[0] > DIVERSITY_SUBSAMPLE:
        flat = flat[rng.choice(flat.shape[0], DIVERSITY_SUBSAMPLE, replace=False)]
    sq = (flat ** 2).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0, None)
    n = flat.shape[0]
    return float(np.sqrt(d2)[np.triu_indices(n, 1)].mean())


def real_halves(n: int, seed: int) -> np.ndarray:
    """(n,) 0/1: the seeded split of the real test images whose two halves define the FD floor."""
    halves: np.ndarray = np.random.default_rng(seed).permutation(n) % 2
    return halves


def evaluate_generator(gen: Generator, test: LabeledImages, classifier: EvalClassifier, *,
                       samples_per_label: int = 1000, seed: int = 0,
                       temperature: float | None = None) -> dict[str, Any]:
    """Fidelity, realism and diversity of ``gen`` against the real test split."""
    k = gen.config.num_classes
    out = gen.generate(list(range(k)), samples_per_label, rng=seed, temperature=temperature)
    report = score_images(out.samples, out.labels, test, classifier, list(gen.config.class_names), seed=seed)
    return {"samples_per_label": samples_per_label, "seed": seed,
            "temperature": _reported_temperature(gen, temperature), **report}


def score_images(images: np.ndarray, labels: np.ndarray, test: LabeledImages, classifier: EvalClassifier,
                 class_names: list[str], *, seed: int = 0) -> dict[str, Any]:
    """Fidelity, realism and diversity of any labelled images (N, C, H, W) against the real test split:
    the model's samples, or its reconstructions of real images (where the decoder alone falls short)."""
    k = len(class_names)
    pred, feats = classifier.predict(images)
    real_pred, real_feats = classifier.predict(test.images)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    halves = real_halves(len(test), seed)
    rng = np.random.default_rng(seed)
    per_class: list[dict[str, Any]] = []
    for c in range(k):
        real, mine = test.labels == c, labels == c
        per_class.append({
            "class": class_names[c],
            "fidelity": float(confusion[c, c] / max(1, mine.sum())),
            "frechet": frechet_distance(feats[mine], real_feats[real]),
            "frechet_floor": frechet_distance(real_feats[real & (halves == 0)], real_feats[real & (halves == 1)]),
            "diversity_generated": mean_pairwise_distance(images[mine], rng),
            "diversity_real": mean_pairwise_distance(test.images[real], rng),
        })
    mean = {key: float(np.mean([row[key] for row in per_class]))
            for key in ("frechet", "frechet_floor", "diversity_generated", "diversity_real")}
    return {
        "classifier_test_accuracy": float((real_pred == test.labels).mean()),
        "label_fidelity": float(np.trace(confusion) / confusion.sum()),
        "worst_class_fidelity": float(min(row["fidelity"] for row in per_class)),
        "frechet_distance": mean["frechet"], "frechet_floor": mean["frechet_floor"],
        "frechet_ratio": mean["frechet"] / mean["frechet_floor"],
        "diversity_ratio": float(np.mean([r["diversity_generated"] / r["diversity_real"] for r in per_class])),
        "per_class": per_class, "confusion_matrix": confusion.tolist(),
    }


def with_contrast(images: np.ndarray, contrast: float) -> np.ndarray:
    """Pixel means (N, C, H, W) as a decoder with its logits times ``contrast`` would draw them."""
    if contrast == 1.0:
        return images
    p = np.clip(images.astype(np.float64), 1e-7, 1 - 1e-7)
    return (1.0 / (1.0 + np.exp(-contrast * (np.log(p) - np.log1p(-p))))).astype(np.float32)


def reconstruction_pool(train: LabeledImages, per_label: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices of up to ``per_label`` seeded training images of each class: what a run reconstructs
    to show how close its decoder alone comes to real images."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(train.labels == c))[:per_label] for c in range(num_classes)]
    chosen: np.ndarray = np.concatenate(picks)
    return chosen


def _reported_temperature(gen: Generator, temperature: float | None) -> float | dict[str, float]:
    """The temperature the samples were drawn at: the given one, else the artifact's (per class if calibrated)."""
    if temperature is not None:
        return temperature
    temps = gen.config.class_temperatures
    if temps is None:
        return gen.config.default_temperature
    return dict(zip(gen.config.class_names, temps, strict=True))


def comparison_sheet(gen: Generator, test: LabeledImages, per_row: int = 8, seed: int = 0,
                     temperature: float | None = None) -> np.ndarray:
    """One row per label: ``per_row`` real test images, then ``per_row`` generated ones, under the titles
    "real" and "generated"."""
    k = gen.config.num_classes
    generated = gen.generate(list(range(k)), per_row, rng=seed, temperature=temperature).samples
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(k):
        pool = np.flatnonzero(test.labels == c)
        real = test.images[rng.choice(pool, per_row, replace=pool.size < per_row)]
        rows.append(np.concatenate([real, generated[c * per_row:(c + 1) * per_row]]))
    return make_image_grid(np.concatenate(rows), 2 * per_row, row_labels=list(gen.config.class_names),
                           titles=[("real", per_row), ("generated", per_row)])
