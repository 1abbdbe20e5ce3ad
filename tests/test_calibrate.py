"""Per-class temperatures chosen at export: the rule, the sample count, and noise of their own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import TINY_SHAPE, make_images
from cvae_sdk_training.calibrate import (
    MAX_DROPPED_SHARE,
    SAMPLES_PER_CLASS,
    TEMPERATURES,
    TIE,
    calibrate_temperatures,
    calibration_key,
    class_targets,
    prune_misread,
    temperature_grid,
)
from cvae_sdk_training.export import GenerativePath, choose_prior, load_model, torch_decoder

from cvae_sdk.artifact import Prior
from cvae_sdk.latents import noise, prior_latents, request_key
from cvae_sdk.quality import EvalClassifier


def test_each_class_gets_its_largest_passing_temperature(tiny_run: Path, tiny_classifier: Path) -> None:
    """The grid goes largest first and a class leaves it at its first passing temperature: the choice is
    the full grid's, on the same noise, with fewer decodes."""
    model, state = load_model(tiny_run)
    prior = choose_prior(model, state, "auto")
    classifier = EvalClassifier.load(tiny_classifier)
    decode = torch_decoder(GenerativePath(model.decoder).eval())
    calibration = calibrate_temperatures(decode, prior, classifier, seed=0)
    targets = class_targets(classifier, model.cfg.num_classes)
    full = temperature_grid(prior)
    assert prior.diagonal and list(calibration.grid) == list(full[:len(calibration.grid)])
    assert max(calibration.grid) == 2.0 and TEMPERATURES[0] == 1.0  # codes may widen; fitted mixtures stop at 1
    labels = np.repeat(np.arange(model.cfg.num_classes), SAMPLES_PER_CLASS)
    for c, chosen in enumerate(calibration.temperatures):
        scores = {t: s for t, row in calibration.grid.items() if (s := row[c]) is not None}
        assert all(round(s * SAMPLES_PER_CLASS) == s * SAMPLES_PER_CLASS for s in scores.values())
        passing = [t for t, s in scores.items() if s >= targets[c]]
        if passing:  # settled there: nothing smaller was decoded for it
            assert chosen == max(passing) == min(scores)
        else:  # none reaches the target: every temperature tried, the largest within TIE of the best fidelity
            assert list(scores) == list(full)
            assert scores[chosen] >= max(scores.values()) - TIE
        assert calibration.fidelity[c] == scores[chosen]
        # the score is the one a full pass at that temperature gives this class's rows
        rows = labels == c
        z = prior_latents(prior, labels, calibration_key(0), 0, chosen)[rows]
        predicted, _ = classifier.predict(decode(z, np.eye(model.cfg.num_classes, dtype=np.float32)[labels[rows]]))
        assert abs(float((predicted == c).mean()) - calibration.fidelity[c]) <= 2 / SAMPLES_PER_CLASS


def test_calibration_draws_noise_of_its_own() -> None:
    """Not the rows that generate(rng=seed) or evaluate draw: an evaluation must not score the samples
    the temperatures were chosen on. Deterministic in the seed."""
    for seed in (0, 1, 12345):
        key = calibration_key(seed)
        np.testing.assert_array_equal(key, calibration_key(seed))
        assert not np.array_equal(key, request_key(seed))
        assert not np.allclose(noise(key, 0, 64, 4), noise(request_key(seed), 0, 64, 4))
    assert not np.array_equal(calibration_key(0), calibration_key(1))


def test_misread_codes_leave_a_prior_of_codes(tiny_classifier: Path) -> None:
    """A class of codes that decode to another class's images (mislabelled training images) misses its target:
    those codes get weight 0, the most misread first and at most MAX_DROPPED_SHARE of the class, and the rest
    share it; a class that meets its target keeps every code."""
    images, labels = make_images(60, TINY_SHAPE, 3, 7)
    bank = images.astype(np.float32) / 255.0                                  # (60, 1, 12, 12), real tiny images

    def decode(z: np.ndarray, onehot: np.ndarray) -> np.ndarray:              # a code's first number picks the image
        return bank[np.clip(np.rint(z[:, 0]).astype(int), 0, len(bank) - 1)]

    own = [np.flatnonzero(labels == c)[:10] for c in range(3)]
    codes = [np.concatenate([own[0][:8], own[1][:2]]), own[1],                # class 0: 2 codes of class 1
             np.concatenate([own[2][:6], own[1][2:6]])]                       # class 2: 4, more than the cap
    means = np.zeros((3, 10, 2))
    means[:, :, 0] = np.stack(codes)
    prior = Prior(np.full((3, 10), 0.1), means, np.full((3, 10, 2), 1e-3), "aggregate")
    classifier = EvalClassifier.load(tiny_classifier)
    pruned, dropped = prune_misread(decode, prior, classifier, seed=0)
    assert MAX_DROPPED_SHARE * 10 == 2 and dropped == (2, 0, 2)
    np.testing.assert_allclose(pruned.weights[0], [1 / 8] * 8 + [0.0] * 2)
    np.testing.assert_array_equal(pruned.weights[1], prior.weights[1])
    logits = classifier.logits(bank[own[1][2:6]])
    margin = logits[:, 2] - np.delete(logits, 2, axis=1).max(axis=1)
    kept = np.ones(10, dtype=bool)
    kept[6 + np.argsort(margin, kind="stable")[:2]] = False                  # the two most misread go
    np.testing.assert_allclose(pruned.weights[2], np.where(kept, 1 / 8, 0.0))
    full = Prior(prior.weights, means, np.einsum("kmd,de->kmde", prior.scales, np.eye(2)), "aggregate")
    assert prune_misread(decode, full, classifier, seed=0) == (full, (0, 0, 0))  # fitted mixtures: temperature
