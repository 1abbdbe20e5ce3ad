"""The evaluation classifier: a small CNN trained on the train split, exported to ONNX.

Its logits measure label fidelity and its penultimate features feed the Fréchet distance, so an
artifact is judged with onnxruntime alone. The ONNX file carries a ``cvae_sdk_classifier`` JSON
entry with its test accuracy and a fingerprint of the data it was trained for.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvae_sdk.atomic import atomic_path
from cvae_sdk.data import open_dataset
from cvae_sdk.evaluate import CLASSIFIER_KEY, dataset_fingerprint
from cvae_sdk.progress import progress_bar
from training.export import quiet_exporter
from training.trainer import split_validation

OPSET = 18


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
        self.features = nn.Sequential(nn.Linear(2 * ch * (h // 4) * (w // 4), cfg.features), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(cfg.features, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(self.convs(x).flatten(1))  # (B, F)
        return self.head(self.dropout(feats)), feats     # logits (B, K), features (B, F)


def train_classifier(data: str, out: Path, *, epochs: int = 12, batch_size: int = 128, lr: float = 1e-3,
                     seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Train on the train split (with a seeded validation split) and export to ``out``."""
    dataset = open_dataset(data)
    if dataset.test is None:
        raise ValueError(f"{data} has no test split; the classifier's accuracy is reported on it")
    train_split, val_split = split_validation(dataset.train, 0.1, seed)
    cfg = ClassifierConfig(train_split.image_shape, dataset.num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
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
    model.eval()
    scores = {"val_accuracy": _accuracy(model, val_split.images, val_split.labels),
              "test_accuracy": _accuracy(model, dataset.test.images, dataset.test.labels)}
    meta = {"num_classes": cfg.num_classes, "class_names": list(dataset.class_names),
            "sample_shape": list(cfg.image_shape), "config": asdict(cfg), **scores,
            "data_fingerprint": dataset_fingerprint(dataset), "train_images": len(train_split)}
    _export(model, cfg, meta, out)
    return scores


@torch.no_grad()
def _accuracy(model: Classifier, images: np.ndarray, labels: np.ndarray) -> float:
    correct = 0
    for start in range(0, len(labels), 2048):
        logits, _ = model(torch.from_numpy(images[start:start + 2048]))
        correct += int((logits.argmax(1).numpy() == labels[start:start + 2048]).sum())
    return correct / len(labels)


def _export(model: Classifier, cfg: ClassifierConfig, meta: dict[str, object], out: Path) -> None:
    import onnx

    batch = torch.export.Dim("batch")
    with tempfile.TemporaryDirectory() as folder, quiet_exporter():
        raw = Path(folder) / "classifier.onnx"
        torch.onnx.export(model, (torch.zeros(4, *cfg.image_shape),), raw, dynamo=True, external_data=False,
                          opset_version=OPSET, input_names=["images"], output_names=["logits", "features"],
                          dynamic_shapes={"x": {0: batch}}, verbose=False)
        proto = onnx.load(raw)
    onnx.helper.set_model_props(proto, {CLASSIFIER_KEY: json.dumps(meta)})
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())
