"""Per-class temperatures chosen at export: the rule, the sample count, and noise of their own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cvae_sdk_training.calibrate import (
    SAMPLES_PER_CLASS,
    TEMPERATURES,
    TIE,
    calibrate_temperatures,
    calibration_key,
    class_targets,
)
from cvae_sdk_training.export import GenerativePath, choose_prior, load_model, torch_decoder

from cvae_sdk.latents import noise, request_key
from cvae_sdk.quality import EvalClassifier


def test_each_class_gets_its_largest_passing_temperature(tiny_run: Path, tiny_classifier: Path) -> None:
    model, state = load_model(tiny_run)
    prior = choose_prior(model, state, "auto")
    classifier = EvalClassifier.load(tiny_classifier)
    calibration = calibrate_temperatures(torch_decoder(GenerativePath(model.decoder).eval()), prior, classifier, seed=0)
    targets = class_targets(classifier, model.cfg.num_classes)
    assert sorted(calibration.grid) == sorted(TEMPERATURES)
    for c, chosen in enumerate(calibration.temperatures):
        scores = {t: calibration.grid[t][c] for t in TEMPERATURES}
        assert all(round(s * SAMPLES_PER_CLASS) == s * SAMPLES_PER_CLASS for s in scores.values())
        passing = [t for t, s in scores.items() if s >= targets[c]]
        if passing:
            assert chosen == max(passing)
        else:  # none reaches the target: the largest temperature within TIE of the best fidelity
            assert scores[chosen] >= max(scores.values()) - TIE
        assert calibration.fidelity[c] == scores[chosen]


def test_calibration_draws_noise_of_its_own() -> None:
    """Not the rows that generate(rng=seed) or evaluate draw: an evaluation must not score the samples
    the temperatures were chosen on. Deterministic in the seed."""
    for seed in (0, 1, 12345):
        key = calibration_key(seed)
        np.testing.assert_array_equal(key, calibration_key(seed))
        assert not np.array_equal(key, request_key(seed))
        assert not np.allclose(noise(key, 0, 64, 4), noise(request_key(seed), 0, 64, 4))
    assert not np.array_equal(calibration_key(0), calibration_key(1))
