"""The shipped MNIST model: it loads offline, describes itself, and reproduces a golden slice."""

from __future__ import annotations

import numpy as np

from cvae_sdk import Generator, shipped_model_path

# generate(range(10), 1, rng=0).samples[:, 0, 14, 12:16] of exported/mnist-cvae.onnx on CPU
GOLDEN_ROW_14 = np.array([
    [0.000191, 0.000026, 0.000048, 0.000061],
    [0.041664, 0.862950, 0.989936, 0.908841],
    [0.003489, 0.036619, 0.671318, 0.981934],
    [0.723519, 0.837346, 0.932772, 0.925052],
    [0.007752, 0.003563, 0.004639, 0.023189],
    [0.536584, 0.035547, 0.000599, 0.000031],
    [0.687854, 0.320328, 0.334076, 0.167034],
    [0.000688, 0.005728, 0.095676, 0.786409],
    [0.991852, 0.936514, 0.652535, 0.687643],
    [0.859369, 0.735405, 0.694335, 0.602305],
], dtype=np.float32)
GOLDEN_LATENT_0 = np.array([0.182723, 0.239009, -0.415339, -1.026], dtype=np.float32)


def test_shipped_model_is_small_and_self_describing() -> None:
    path = shipped_model_path()
    assert path.name == "mnist-cvae.onnx" and path.stat().st_size < 10 * 1024 * 1024
    gen = Generator.from_pretrained()
    cfg = gen.config
    assert cfg.num_classes == 10 and cfg.class_names == tuple(str(i) for i in range(10))
    assert cfg.sample_shape == (1, 28, 28) and cfg.latent_dim == 16
    assert cfg.prior.source == "aggregate" and cfg.prior.num_components == 10
    assert cfg.default_temperature == 0.9
    assert cfg.model_config["arch"] == "conv" and cfg.train_config["seed"] == 0


def test_golden_slice() -> None:
    out = Generator.from_pretrained(threads=1).generate(list(range(10)), 1, rng=0)
    np.testing.assert_allclose(out.samples[:, 0, 14, 12:16], GOLDEN_ROW_14, atol=1e-5)
    np.testing.assert_allclose(out.latents[0, :4], GOLDEN_LATENT_0, atol=1e-5)
