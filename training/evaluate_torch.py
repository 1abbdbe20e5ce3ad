"""Evaluation of a run or checkpoint: export it to a temporary artifact for the sample metrics, and
compute the likelihood numbers, which need the encoder and so PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvae_sdk.data import LabeledImages

from .export import export_generator, load_model
from .likelihood import estimate_nll


def export_for_evaluation(source: Path, folder: Path, temperature: float | None) -> Path:
    """The artifact ``cvae-sdk export`` would write (with ``temperature=None``, its calibrated temperatures),
    so a run scores as its exported model does."""
    out = folder / "evaluated.onnx"
    export_generator(source, out, temperature=temperature, allow_low_fidelity=True)  # scored, not shipped
    return out


def likelihood_report(source: Path, test: LabeledImages, *, k: int, limit: int | None, binarized: bool,
                      seed: int, progress: bool) -> dict[str, Any]:
    """Test ELBO and importance-sampled -log p(x|y), under the training and the artifact prior."""
    model, state = load_model(source)
    full_x, full_y = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    if binarized:  # one seeded binarisation, as in Burda et al.'s dynamically binarised MNIST
        full_x = torch.bernoulli(full_x, generator=torch.Generator().manual_seed(seed))
    x, y = (full_x, full_y) if limit is None else (full_x[:limit], full_y[:limit])
    likelihood = {"bernoulli": "Bernoulli likelihood", "gaussian": "Gaussian likelihood of one shared variance "
                  "(a density: not comparable to Bernoulli results)"}[model.cfg.likelihood]
    report: dict[str, Any] = {"data": "binarized (seeded Bernoulli draw of each test pixel)" if binarized
                              else f"continuous [0, 1] pixels, {likelihood} (not comparable "
                                   "to binarised-MNIST results)",
                              "training_data_binarized": bool(state["train_config"].get("binarize"))}
    priors: dict[str, dict[str, torch.Tensor] | None] = {"training_prior": None}
    if state.get("aggregate_prior") is not None:
        priors["artifact_prior"] = state["aggregate_prior"]
    elbo = estimate_nll(model, full_x, full_y, k=1, priors=priors, seed=seed, progress=progress)
    report["test_elbo"] = {name: {"elbo": v["elbo"], "images": v["images"]} for name, v in elbo.items()}
    report.update(estimate_nll(model, x, y, k=k, priors=priors, seed=seed, progress=progress))
    return report


@torch.no_grad()
def reconstruct(source: Path, images: np.ndarray, labels: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The run's decoder at its encoder's mean code of each image: (N, C, H, W) in [0, 1], no noise."""
    model, _ = load_model(source)
    parts = []
    for start in range(0, images.shape[0], batch):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch], dtype=np.float32))  # (B, C, H, W)
        y = torch.from_numpy(labels[start:start + batch].astype(np.int64))                          # (B,)
        mean, _ = model.encode(x, y)                                                                # (B, D)
        parts.append(model.decode(mean, y).numpy())
    return np.concatenate(parts)
