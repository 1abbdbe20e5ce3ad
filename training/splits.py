"""The seeded train/validation split that training and the evaluation classifier share."""

from __future__ import annotations

import numpy as np

from cvae_sdk.data import LabeledImages


def split_validation(data: LabeledImages, fraction: float, seed: int) -> tuple[LabeledImages, LabeledImages]:
    """A seeded random split; the same seed gives the same split on any machine."""
    order = np.random.default_rng(seed).permutation(len(data))
    n_val = max(1, int(round(fraction * len(data))))
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))
