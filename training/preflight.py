"""The checks a training run makes before any work: the run folder, the checkpoint to resume, the
data (sizes, classes, images per class), the device, the options, and the classifier that watches it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvae_sdk.atomic import atomic_path
from cvae_sdk.backends import TrainConfig
from cvae_sdk.data import Dataset, LabeledImages, open_dataset
from cvae_sdk.quality import EvalClassifier, default_classifier, run_classifier_path

from .board import check_installed
from .checkpoint import LAST, load_checkpoint
from .classifier import train_run_classifier
from .splits import split_validation

MIN_IMAGES_PER_CLASS = 10     # fewer cannot fit a class's prior, nor say anything about its samples
MIN_SIDE = 4                  # the conv encoder and the evaluation classifier halve the image twice
MAX_SIDE = 128                # the conv decoder paints a (H/4, W/4) map from one dense layer: 33.5M weights at 128


def guard_classifier(config: TrainConfig, dataset: Dataset, train_split: LabeledImages,
                     val_split: LabeledImages, run_dir: Path) -> EvalClassifier:
    """The classifier that watches label fidelity, kept in the run as ``classifier.onnx`` for export.

    ``--classifier``, else the shipped one if it was trained on this data, else (or on resume) the
    one this run fitted on its own train split (under a minute on 2 cores).
    """
    kept = run_classifier_path(run_dir)
    if not kept.is_file():
        source = Path(config.classifier) if config.classifier is not None else _shipped_match(dataset)
        if source is not None:
            EvalClassifier.load(source)  # a readable classifier, before it is copied
            with atomic_path(kept) as tmp:
                tmp.write_bytes(source.read_bytes())
        else:
            train_run_classifier(train_split, val_split, list(dataset.class_names), kept, config.seed)
    return EvalClassifier.load(kept)


def _shipped_match(dataset: Dataset) -> Path | None:
    try:
        return default_classifier(dataset).path
    except ValueError:
        return None


def check_trainable(dataset: Dataset, doublings: int) -> None:
    """Refuse data a CVAE cannot be trained on, naming the limit, before any work."""
    _, h, w = dataset.train.image_shape
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"images are {h}x{w} pixels; cvae-sdk needs at least {MIN_SIDE}x{MIN_SIDE} (its conv "
                         "encoder and evaluation classifier halve the image twice). Resize or pad the images")
    if min(h, w) < 2 ** doublings:
        raise ValueError(f"images are {h}x{w} pixels; --doublings {doublings} halves them {doublings} times "
                         f"and needs at least {2 ** doublings} pixels a side: lower --doublings")
    if max(h, w) > MAX_SIDE:
        raise ValueError(f"images are {h}x{w} pixels; cvae-sdk trains on at most {MAX_SIDE}x{MAX_SIDE} (its decoder "
                         "paints a quarter-size map from one dense layer, whose weights grow with the image's area). "
                         f"Resize the images to {MAX_SIDE} pixels a side or less, e.g. 64x64")
    counts = np.bincount(dataset.train.labels, minlength=dataset.num_classes)
    empty = [dataset.class_names[k] for k in np.flatnonzero(counts == 0)]
    if empty:
        raise ValueError(f"class(es) {empty[:10]} have no training images (labels must be 0..K-1 with every "
                         f"class present; {len(empty)} of {dataset.num_classes} ids are unused). Relabel to "
                         "consecutive ids, or drop those class_names")
    few = {dataset.class_names[k]: int(counts[k]) for k in np.flatnonzero(counts < MIN_IMAGES_PER_CLASS)}
    if few:
        raise ValueError(f"class(es) with fewer than {MIN_IMAGES_PER_CLASS} training images: {few}; every class "
                         f"needs at least {MIN_IMAGES_PER_CLASS} to fit its prior and check its samples")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def preflight(config: TrainConfig, resume: bool
              ) -> tuple[TrainConfig, dict[str, Any] | None, Dataset, torch.device]:
    """The checks that fail before any work: the run folder, the checkpoint to resume, the data, the device."""
    run_dir = Path(config.out)
    state = None
    if resume:
        state = load_checkpoint(run_dir / LAST)
        saved = TrainConfig.from_dict(state["train_config"])
        config = replace(saved, epochs=saved.epochs if config.epochs is None else config.epochs, device=config.device)
    elif (run_dir / LAST).exists():
        raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or choose a new --out")
    device = resolve_device(config.device)
    dataset = open_dataset(config.data, mirror=config.mirror)
    check_trainable(dataset, config.doublings)
    if config.tensorboard:
        check_installed()
    components = config.aggregate_components
    if components is not None:  # an explicit count must fit every class (the planned one fits by construction)
        smallest = smallest_class(split_validation(dataset.train, config.val_fraction, config.seed)[0].labels,
                                   dataset.num_classes)
        if components > smallest:
            raise ValueError(f"--aggregate-components {components} needs as many training images in every class; "
                             f"the smallest class has {smallest} after the validation split. "
                             f"Pass at most {smallest}")
    return config, state, dataset, device


def smallest_class(labels: np.ndarray, num_classes: int) -> int:
    """Images in the smallest of ``num_classes`` classes."""
    return int(np.bincount(labels, minlength=num_classes).min())

