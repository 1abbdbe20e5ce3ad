"""Per-class sampling temperatures, chosen at export with the run's evaluation classifier.

Temperature trades label fidelity for diversity: a lower one keeps z near the modes of p(z|y).
Classes differ (a "1" survives a wide prior, an "8" drifts into a "3"), so each class gets the
largest temperature on a grid whose samples the classifier reads as that class more reliably than
it reads the class's real held-out images: ``MARGIN`` of the way from that accuracy to 1, capped
at ``FIDELITY_TARGET``. A classifier that reads real "q"s 90% of the time then asks for 96% of the
sampled "q"s: samples a little more prototypical than real ones, with as much diversity as that
allows (an independent judge of the same data agrees more readily with prototypes). A class that reaches its target
at no grid point gets the temperature with its best fidelity. Every temperature draws the same
noise (common random numbers), so grid points differ by temperature alone. That noise is a stream
of its own under the run's seed, never the rows ``generate(rng=seed)`` or ``evaluate`` draw, so
an evaluation does not score the very samples the temperatures were chosen on; and there are
enough samples per class that the largest passing temperature is rarely one that passed by luck
(at 1,000 the standard error of a fidelity near 0.97 is about half a point).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cvae_sdk.artifact import Prior
from cvae_sdk.latents import prior_latents, request_key
from cvae_sdk.quality import EvalClassifier

TEMPERATURES = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)
FIDELITY_TARGET = 0.99  # the shipped model's fidelity target; a lower cap left MNIST digits at 0.98
MARGIN = 0.6  # the share of the classifier's real-image error the samples must avoid
SAMPLES_PER_CLASS = 1000
CALIBRATION_STREAM = 0xCA1B  # with the run's seed, names calibration's own noise (calibration_key)
TIE = 0.005  # fidelities this close count as equal: the larger temperature (more diversity) wins

Decode = Callable[[np.ndarray, np.ndarray], np.ndarray]  # z (N, D), one-hot y (N, K) -> images (N, C, H, W)


@dataclass(frozen=True)
class Calibration:
    temperatures: tuple[float, ...]  # (K,): the chosen temperature of each class
    fidelity: tuple[float, ...]      # (K,): the classifier's fidelity at that temperature
    grid: dict[float, list[float]]   # temperature -> per-class fidelity, for the record

    def summary(self, class_names: tuple[str, ...]) -> dict[str, dict[str, float]]:
        return {name: {"temperature": t, "fidelity": f}
                for name, t, f in zip(class_names, self.temperatures, self.fidelity, strict=True)}


def class_targets(classifier: EvalClassifier, k: int) -> list[float]:
    """Per class: MARGIN of the way from the classifier's accuracy on real held-out images to 1, capped."""
    return [min(FIDELITY_TARGET, float(a) + MARGIN * (1.0 - float(a))) for a in classifier.class_accuracy(k)]


def calibration_key(seed: int) -> np.ndarray:
    """The noise key of calibration: deterministic in ``seed``, and not ``request_key(seed)``."""
    return request_key(np.random.SeedSequence([seed, CALIBRATION_STREAM]))


def calibrate_temperatures(decode: Decode, prior: Prior, classifier: EvalClassifier, *,
                           seed: int = 0) -> Calibration:
    """Choose one temperature per class (see the module docstring)."""
    k = prior.weights.shape[0]
    targets = class_targets(classifier, k)
    labels = np.repeat(np.arange(k), SAMPLES_PER_CLASS)  # (K*S,)
    onehot = np.eye(k, dtype=np.float32)[labels]
    key = calibration_key(seed)
    grid: dict[float, list[float]] = {}
    for temperature in TEMPERATURES:
        predicted, _ = classifier.predict(decode(prior_latents(prior, labels, key, 0, temperature), onehot))
        hits = (predicted == labels).reshape(k, SAMPLES_PER_CLASS).mean(axis=1)
        grid[temperature] = [float(h) for h in hits]
    chosen, fidelity = [], []
    for c in range(k):
        scores = {t: grid[t][c] for t in TEMPERATURES}
        passing = [t for t in TEMPERATURES if scores[t] >= targets[c]]
        best = max(scores.values())
        pick = max(passing) if passing else max(t for t in TEMPERATURES if scores[t] >= best - TIE)
        chosen.append(pick)
        fidelity.append(scores[pick])
    return Calibration(tuple(chosen), tuple(fidelity), grid)
