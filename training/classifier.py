"""The evaluation classifier: a small CNN trained on the train split, exported to ONNX.

Its logits measure label fidelity and its penultimate features feed the Fréchet distance, so an
artifact is judged with onnxruntime alone. The ONNX file carries a ``cvae_sdk_classifier`` JSON
entry with its test accuracy and a fingerprint of the data it was trained for.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvae_sdk.atomic import atomic_path
from cvae_sdk.data import LabeledImages, open_dataset
from cvae_sdk.progress import progress_bar
from cvae_sdk.quality import CLASSIFIER_KEY, dataset_fingerprint

from .onnx_export import export_module
from .precision import adam
from .splits import split_validation


@dataclass(frozen=True)
class ClassifierConfig:
    image_shape: tuple[int, int, int]
    num_classes: int
    channels: int = 32
    features: int = 128


class Classifier(nn.Module):
    """Two conv-pool blocks, a feature layer (the penultimate features) and a linear head."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        c, h, w = cfg.image_shape
        ch = cfg.channels
        self.convs = nn.Sequential(
            nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.features = nn.Sequential(nn.Linear(2 * ch * max(1, h // 4) * max(1, w // 4), cfg.features), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(cfg.features, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(self.convs(x).flatten(1))  # (B, F)
        return self.head(self.dropout(feats)), feats     # logits (B, K), features (B, F)


RUN_CLASSIFIER_SAMPLES = 50_000     # examples the in-run classifier sees (under a minute on 2 cores)


def train_classifier(data: str, out: Path, *, epochs: int = 12, batch_size: int = 128, lr: float = 1e-3,
                     seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Train on the train split (with a seeded validation split) and export to ``out``."""
    dataset = open_dataset(data)
    if dataset.test is None:
        raise ValueError(f"{data} has no test split; the classifier's accuracy is reported on it")
    train_split, val_split = split_validation(dataset.train, 0.1, seed)
    cfg = ClassifierConfig(train_split.image_shape, dataset.num_classes)
    model = fit_classifier(cfg, train_split, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                           progress=progress)
    scores = {"val_accuracy": _accuracy(model, val_split.images, val_split.labels),
              "test_accuracy": _accuracy(model, dataset.test.images, dataset.test.labels)}
    meta = {"num_classes": cfg.num_classes, "class_names": list(dataset.class_names),
            "sample_shape": list(cfg.image_shape), "config": asdict(cfg), **scores,
            "data_fingerprint": dataset_fingerprint(dataset), "train_images": len(train_split)}
    _export(model, cfg, meta, out)
    return scores


def train_run_classifier(train_split: LabeledImages, val_split: LabeledImages, class_names: list[str],
                         out: Path, seed: int) -> dict[str, float]:
    """A small classifier fitted on a run's own train split, so label fidelity works for any data.

    The shipped classifier's shape, about ``RUN_CLASSIFIER_SAMPLES`` examples seen at a higher rate.
    Its validation accuracy per class says how far its verdicts can be trusted: export holds each
    class's samples to it (see :mod:`cvae_sdk_training.calibrate`).
    """
    cfg = ClassifierConfig(train_split.image_shape, len(class_names))
    epochs = max(3, min(12, math.ceil(RUN_CLASSIFIER_SAMPLES / max(1, len(train_split)))))
    model = fit_classifier(cfg, train_split, epochs=epochs, lr=2e-3, seed=seed, progress=False)
    predicted = _predict(model, val_split.images)
    per_class = [float((predicted[val_split.labels == k] == k).mean()) if (val_split.labels == k).any() else 1.0
                 for k in range(cfg.num_classes)]
    scores = {"val_accuracy": float((predicted == val_split.labels).mean())}
    meta = {"num_classes": cfg.num_classes, "class_names": class_names, "sample_shape": list(cfg.image_shape),
            "config": asdict(cfg), **scores, "val_accuracy_per_class": per_class,
            "train_images": len(train_split), "epochs": epochs}
    _export(model, cfg, meta, out)
    return scores


def fit_classifier(cfg: ClassifierConfig, train_split: LabeledImages, *, epochs: int, batch_size: int = 128,
                   lr: float = 1e-3, seed: int = 0, progress: bool = True) -> Classifier:
    """Seeded Adam with cosine decay and small random shifts; returns the model in eval mode.

    Initialisation and dropout draw from torch's RNG seeded with ``seed`` inside ``fork_rng``: the same
    seed gives the same weights, and the caller's global RNG state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(cfg)
        return _fit(model, train_split, epochs, batch_size, lr, seed, progress)


def _fit(model: Classifier, train_split: LabeledImages, epochs: int, batch_size: int, lr: float, seed: int,
         progress: bool) -> Classifier:
    optimizer = adam(model.parameters(), lr)
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(train_split.images), torch.from_numpy(train_split.labels)
    steps = math.ceil(len(train_split) / batch_size)
    for epoch in range(epochs):
        for group in optimizer.param_groups:  # cosine decay
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        model.train()
        perm = torch.randperm(len(train_split), generator=generator)
        with progress_bar(steps, f"classifier epoch {epoch + 1}/{epochs}", progress) as bar:
            for step in range(steps):
                idx = perm[step * batch_size:(step + 1) * batch_size]
                shift = torch.randint(-2, 3, (2,), generator=generator).tolist()  # light augmentation
                batch = torch.roll(x[idx], shifts=shift, dims=(2, 3))
                loss = F.cross_entropy(model(batch)[0], y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.advance(1, f"loss {loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def _predict(model: Classifier, images: np.ndarray) -> np.ndarray:
    return np.concatenate([model(torch.from_numpy(images[start:start + 2048]))[0].argmax(1).numpy()
                           for start in range(0, len(images), 2048)])


def _accuracy(model: Classifier, images: np.ndarray, labels: np.ndarray) -> float:
    return float((_predict(model, images) == labels).mean())


def _export(model: Classifier, cfg: ClassifierConfig, meta: dict[str, object], out: Path) -> None:
    proto = export_module(model, (torch.zeros(4, *cfg.image_shape),), input_names=["images"],
                          output_names=["logits", "features"], metadata={CLASSIFIER_KEY: json.dumps(meta)})
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())
