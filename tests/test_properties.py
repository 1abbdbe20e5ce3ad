"""Property-based tests over Generator.generate: valid input behaves, invalid input fails as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvae_sdk import Generator

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
valid_label = st.one_of(st.integers(0, 2), st.sampled_from(["top", "middle", "bottom"]))


@pytest.fixture(scope="module")
def gen(tiny_model: Path) -> Generator:
    return Generator.from_pretrained(tiny_model, chunk_size=64)


@SETTINGS
@given(labels=st.lists(valid_label, min_size=1, max_size=5), n=st.integers(1, 40),
       seed=st.integers(0, 2**64), temperature=st.floats(0.0, 3.0),
       output_type=st.sampled_from(["np", "uint8"]))
def test_valid_requests(gen: Generator, labels: list[int | str], n: int, seed: int, temperature: float,
                        output_type: str) -> None:
    out = gen.generate(labels, n, rng=seed, temperature=temperature, output_type=output_type)  # type: ignore[arg-type]
    total = len(labels) * n
    assert out.samples.shape == (total, 1, 12, 12) and out.labels.shape == (total,)
    assert out.latents.shape == (total, 4) and np.isfinite(out.latents).all()
    if output_type == "np":
        assert out.samples.dtype == np.float32 and 0.0 <= out.samples.min() and out.samples.max() <= 1.0
    else:
        assert out.samples.dtype == np.uint8
    again = gen.generate(labels, n, rng=seed, temperature=temperature, output_type=output_type)  # type: ignore[arg-type]
    assert np.array_equal(out.samples, again.samples)


junk = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=5),
                 st.integers(-10**6, 10**6), st.lists(st.integers(-5, 5), max_size=3),
                 st.lists(st.floats(allow_nan=True), min_size=1, max_size=3), st.binary(max_size=3))


@SETTINGS
@given(labels=junk, n=junk, temperature=junk, output_type=junk)
def test_any_input_raises_only_documented_errors(gen: Generator, labels: object, n: object, temperature: object,
                                                 output_type: object) -> None:
    try:
        out = gen.generate(labels, n, rng=0, temperature=temperature, output_type=output_type)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return
    assert 0.0 <= np.min(out.samples) and np.max(out.samples) <= 1.0  # whatever was accepted is valid output
