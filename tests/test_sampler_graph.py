"""The sampler graph: labels and noise in, images out, equal to Generator.generate on the same noise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cvae_sdk import ArtifactError, Generator
from cvae_sdk.latents import prior_noise, request_key
from cvae_sdk.sampler_graph import SAMPLER_KEY, write_sampler


def test_the_sampler_graph_draws_what_generate_draws(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "sampler.onnx"
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", "sampler", str(tiny_model), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bytes"] == out.stat().st_size
    gen = Generator.from_pretrained(tiny_model, providers=["CPUExecutionProvider"])
    labels = np.array([2, 0, 1, 1, 2, 0, 0], dtype=np.int64)
    want = gen.generate(labels, 1, rng=7, temperature=0.8)
    eps, u = prior_noise(gen.config.prior, request_key(7), 0, labels.shape[0])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {"labels": labels, "eps": eps.astype(np.float32), "u": (np.zeros(7) if u is None else u).astype(np.float32),
             "temperature": np.full(7, 0.8, dtype=np.float32)}
    got = session.run(["samples"], feeds)[0]
    assert got.shape == want.samples.shape and np.abs(got - want.samples).max() < 1e-4
    assert SAMPLER_KEY in session.get_modelmeta().custom_metadata_map
    with pytest.raises(ArtifactError, match="not a cvae-sdk artifact"):  # a sampler is not an artifact
        Generator.from_pretrained(out)


def test_the_shipped_mixture_picks_components_as_the_sdk_does(tmp_path: Path) -> None:
    """The shipped prior has thousands of codes per digit: the graph's component choice must match."""
    gen = Generator.from_pretrained(providers=["CPUExecutionProvider"])
    path = write_sampler(gen.model_path, tmp_path / "s.onnx")
    labels = np.arange(200, dtype=np.int64) % 10
    want = gen.generate(labels, 1, rng=3)
    eps, u = prior_noise(gen.config.prior, request_key(3), 0, 200)
    assert u is not None
    per_class = np.broadcast_to(gen.config.sampling_temperature(None), (10,))  # the calibrated temperatures
    temps = per_class[labels].astype(np.float32)
    feeds = {"labels": labels, "eps": eps.astype(np.float32), "u": u.astype(np.float32), "temperature": temps}
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["samples"], feeds)[0]
    assert np.abs(got - want.samples).max() < 1e-4
