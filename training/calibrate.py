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

A prior made of the encoder's own codes (one Gaussian per training image, the default) gives
temperature little to work with: each code decodes near its own image, whatever the spread. Its lever
is the codes themselves: in a class whose samples miss the target at T = 1, :func:`prune_misread`
drops the codes whose decoded mean the classifier reads as another class (ambiguous or mislabelled
training images), the most misread first and at most ``MAX_DROPPED_SHARE`` of the class (where the
classifier misreads many real images, dropping every misread code trades too much realism for fidelity:
benchmarks/quality.md), before the temperatures are chosen (up to 2 for such a prior: ``CODE_TEMPERATURES``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from cvae_sdk.artifact import Prior
from cvae_sdk.latents import prior_latents, request_key
from cvae_sdk.quality import EvalClassifier

TEMPERATURES = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)
# A prior of codes may also widen every code's Gaussian, up to twice the encoder's spread: samples then
# move further from the training images they came from (MNIST at 2: FD 1.266x the floor against 1.315x at 1).
CODE_TEMPERATURES = (2.0, 1.75, 1.5, 1.25)
MAX_DROPPED_SHARE = 0.2  # prune_misread drops at most this share of a class's codes, the most misread first
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
    grid: dict[float, list[float | None]]  # temperature tried -> per-class fidelity (None: settled before)
    dropped: tuple[int, ...] = field(default=())  # (K,): codes prune_misread took out of each class's prior

    def summary(self, class_names: tuple[str, ...]) -> dict[str, dict[str, float]]:
        return {name: {"temperature": t, "fidelity": f}
                for name, t, f in zip(class_names, self.temperatures, self.fidelity, strict=True)}


def class_targets(classifier: EvalClassifier, k: int) -> list[float]:
    """Per class: MARGIN of the way from the classifier's accuracy on real held-out images to 1, capped."""
    return [min(FIDELITY_TARGET, float(a) + MARGIN * (1.0 - float(a))) for a in classifier.class_accuracy(k)]


def temperature_grid(prior: Prior) -> tuple[float, ...]:
    """The temperatures calibration tries, largest first: above 1 too for a prior of codes (diagonal)."""
    return CODE_TEMPERATURES + TEMPERATURES if prior.diagonal else TEMPERATURES


def calibration_key(seed: int) -> np.ndarray:
    """The noise key of calibration: deterministic in ``seed``, and not ``request_key(seed)``."""
    return request_key(np.random.SeedSequence([seed, CALIBRATION_STREAM]))


def prune_misread(decode: Decode, prior: Prior, classifier: EvalClassifier, *,
                  seed: int = 0) -> tuple[Prior, tuple[int, ...]]:
    """For a prior of codes (diagonal): in each class whose samples at T = 1 miss their target, the codes
    whose decoded mean the classifier reads as another class get weight 0 (at least one code stays).

    Returns the prior (the same object when nothing is dropped) and the codes dropped per class."""
    k = prior.weights.shape[0]
    if not prior.diagonal:
        return prior, (0,) * k
    targets = class_targets(classifier, k)
    labels = np.repeat(np.arange(k), SAMPLES_PER_CLASS)                                   # (K*S,)
    eye = np.eye(k, dtype=np.float32)
    predicted, _ = classifier.predict(decode(prior_latents(prior, labels, calibration_key(seed), 0, 1.0),
                                             eye[labels]))
    hits = (predicted == labels).reshape(k, SAMPLES_PER_CLASS).mean(axis=1)              # (K,)
    weights, dropped = prior.weights.copy(), [0] * k
    for c in np.flatnonzero(hits < np.asarray(targets)):
        codes = np.flatnonzero(weights[c] > 0)                                            # (n,)
        logits = classifier.logits(decode(prior.means[c, codes].astype(np.float32), eye[np.full(codes.size, c)]))
        margin = logits[:, c] - np.delete(logits, c, axis=1).max(axis=1)                  # (n,) < 0: misread
        worst = np.argsort(margin, kind="stable")[:int(MAX_DROPPED_SHARE * codes.size)]  # the most misread first
        misread = codes[worst[margin[worst] < 0]]
        if 0 < misread.size < codes.size:
            weights[c, misread] = 0.0
            weights[c] /= weights[c].sum()
            dropped[c] = int(misread.size)
    if not any(dropped):
        return prior, tuple(dropped)
    return replace(prior, weights=weights), tuple(dropped)


def calibrate_temperatures(decode: Decode, prior: Prior, classifier: EvalClassifier, *,
                           seed: int = 0) -> Calibration:
    """Choose one temperature per class (see the module docstring).

    The grid is tried largest first, so a class is settled at its first passing temperature: later
    temperatures decode only the classes still open, on the rows they would have had in a full pass
    (the same noise), and the choice is the one a full grid gives. ``grid`` records what was tried:
    ``None`` for a class settled before that temperature."""
    k = prior.weights.shape[0]
    targets = class_targets(classifier, k)
    labels = np.repeat(np.arange(k), SAMPLES_PER_CLASS)  # (K*S,)
    onehot = np.eye(k, dtype=np.float32)[labels]
    key = calibration_key(seed)
    grid: dict[float, list[float | None]] = {}
    open_classes = np.ones(k, dtype=bool)                 # (K,): no passing temperature yet
    for temperature in temperature_grid(prior):
        if not open_classes.any():
            break
        rows = open_classes[labels]                       # (K*S,): the open classes' rows
        z = prior_latents(prior, labels, key, 0, temperature)[rows]
        predicted, _ = classifier.predict(decode(z, onehot[rows]))
        hits = (predicted == labels[rows]).reshape(-1, SAMPLES_PER_CLASS).mean(axis=1)  # (open,)
        scores: list[float | None] = [None] * k
        for index, h in zip(np.flatnonzero(open_classes).tolist(), hits, strict=True):
            scores[index] = float(h)
            open_classes[index] = h < targets[index]
        grid[temperature] = scores
    chosen, fidelity = [], []
    for c in range(k):
        tried = {t: score for t, row in grid.items() if (score := row[c]) is not None}
        passing = [t for t, s in tried.items() if s >= targets[c]]
        best = max(tried.values())
        pick = max(passing) if passing else max(t for t, s in tried.items() if s >= best - TIE)
        chosen.append(pick)
        fidelity.append(tried[pick])
    return Calibration(tuple(chosen), tuple(fidelity), grid)
