"""Output contrast, chosen at export: the decoder's logits scaled before the sigmoid, at no sampling cost.

A decoder trained with a per-pixel likelihood draws each pixel's mean. Where a stroke's exact place
is uncertain given z, that mean is a grey halo around it: soft, low-contrast strokes that no prior
or temperature sharpens. Scaling the logits by a contrast ``s > 1`` pushes every pixel towards the
side of 0.5 it is already on: the halo thins, the stroke keeps its place and its 0.5 contour.
Export folds ``s`` into the decoder's last layer (its weights and bias times ``s``; that layer is
linear and its output goes straight into the sigmoid), so the exported graph and its FLOPs are
the same.

The contrast is chosen per run on a grid, with the run's evaluation classifier: the one whose
samples (at the calibrated temperatures, drawn from calibration's own noise) come closest to the
run's real training images in Fréchet distance of the classifier's features, averaged over the
classes as ``evaluate`` does, among the contrasts that keep the samples' label fidelity within
``TIE`` of the decoder as trained. Where no contrast beats 1 the decoder is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cvae_sdk.data import LabeledImages
from cvae_sdk.quality import EvalClassifier, frechet_distance

CONTRASTS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0)
MIN_CONTRAST, MAX_CONTRAST = 0.25, 8.0  # what export --contrast accepts
REAL_PER_CLASS = 1000   # real training images per class the samples are compared with (at most)
TIE = 0.005             # the label fidelity a contrast may lose against 1.0
FOLD_TOLERANCE = 1e-4   # relative: the folded decoder's logits against s times the trained ones


@dataclass(frozen=True)
class ContrastChoice:
    contrast: float
    frechet: dict[float, float]     # contrast -> Fréchet distance to real training images (mean over classes)
    fidelity: dict[float, float]    # contrast -> the classifier's label fidelity


def choose_contrast(logits: np.ndarray, labels: np.ndarray, real: LabeledImages, classifier: EvalClassifier,
                    *, seed: int = 0) -> ContrastChoice:
    """The contrast on :data:`CONTRASTS` for samples' ``logits`` (N, C, H, W) of ``labels`` (N,)."""
    k = int(labels.max()) + 1
    pool = _real_pool(real.labels, k, seed)
    _, real_features = classifier.predict(real.images[pool])
    real_labels = real.labels[pool]
    frechet, fidelity = {}, {}
    for contrast in CONTRASTS:
        images = 0.5 + 0.5 * np.tanh(np.float32(0.5 * contrast) * logits, dtype=np.float32)  # sigmoid, in float32
        predicted, features = classifier.predict(images)
        fidelity[contrast] = float((predicted == labels).mean())
        frechet[contrast] = float(np.mean([frechet_distance(features[labels == c], real_features[real_labels == c])
                                           for c in range(k)]))
    allowed = [c for c in CONTRASTS if fidelity[c] >= fidelity[1.0] - TIE]
    return ContrastChoice(min(allowed, key=lambda c: frechet[c]), frechet, fidelity)


def _real_pool(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of up to REAL_PER_CLASS seeded training images of each class."""
    rng = np.random.default_rng([seed, 0xC0])
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:REAL_PER_CLASS] for c in range(k)])


def fold_contrast(decoder: nn.Module, contrast: float, latent_dim: int, num_classes: int) -> nn.Module:
    """``decoder`` with its last layer's weight and bias times ``contrast``: logits times ``contrast``.

    Checked on random inputs, so a decoder whose last layer is not the linear map into the
    logits is refused rather than folded wrongly."""
    if contrast == 1.0:
        return decoder
    layers = [m for m in decoder.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)
              and isinstance(getattr(m, "bias", None), torch.Tensor)]
    generator = torch.Generator().manual_seed(0)
    probe = (torch.randn((8, latent_dim), generator=generator),                   # (8, D)
             torch.eye(num_classes)[torch.arange(8) % num_classes])               # (8, K) one-hot
    with torch.no_grad():
        before = decoder(*probe)
        last = layers[-1]
        for name in ("weight", "bias"):
            param: torch.Tensor = getattr(last, name)
            param.mul_(contrast)
        after = decoder(*probe)
    scale = before.abs().max().clamp_min(1.0)
    if not torch.allclose(after, contrast * before, atol=float(FOLD_TOLERANCE * scale), rtol=0):
        raise ValueError(f"cannot fold an output contrast into {type(decoder).__name__}: its last layer does not "
                         "map straight to the logits; export with --contrast 1")
    return decoder

