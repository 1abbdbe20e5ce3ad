"""The shipped MNIST model: it loads offline, describes itself, and reproduces a golden slice."""

from __future__ import annotations

import numpy as np

from cvae_sdk import Generator, shipped_model_path

# generate(range(10), 1, rng=0).samples[:, 0, 14, 12:16] of exported/mnist-cvae.onnx on CPU
GOLDEN_ROW_14 = np.array([
    [0.367088, 0.072935, 0.016414, 0.011215],
    [0.262999, 0.939378, 0.888772, 0.047205],
    [0.615318, 0.507794, 0.694967, 0.902419],
    [0.526495, 0.595490, 0.836079, 0.896319],
    [0.607098, 0.638602, 0.691184, 0.919112],
    [0.933457, 0.899477, 0.684374, 0.199734],
    [0.791152, 0.808084, 0.776833, 0.817029],
    [0.004669, 0.003274, 0.002919, 0.004885],
    [0.719935, 0.948832, 0.955915, 0.910733],
    [0.000224, 0.000061, 0.000178, 0.001394],
], dtype=np.float32)
GOLDEN_LATENT_0 = np.array([1.624602, 1.134812, -0.961949, 0.237973], dtype=np.float32)


def test_shipped_model_is_small_and_self_describing() -> None:
    path = shipped_model_path()
    assert path.name == "mnist-cvae.onnx" and path.stat().st_size < 10 * 1024 * 1024
    gen = Generator.from_pretrained()
    cfg = gen.config
    assert cfg.num_classes == 10 and cfg.class_names == tuple(str(i) for i in range(10))
    assert cfg.sample_shape == (1, 28, 28) and cfg.latent_dim == 16
    assert cfg.prior.source == "aggregate" and cfg.prior.num_components == 64
    # the defaults made it: per-digit temperatures from export's calibration, the sub-pixel decoder
    assert cfg.class_temperatures == (1.0, 1.0, 0.9, 0.8, 1.0, 0.8, 1.0, 1.0, 0.8, 1.0)
    assert cfg.model_config["arch"] == "conv" and cfg.model_config["upsample"] == "subpixel"
    assert cfg.train_config["seed"] == 0 and cfg.train_config["epochs"] is None


def test_shipped_int8_variant_draws_the_same_digits() -> None:
    """variant="int8" loads mnist-cvae.int8.onnx: the same prior and temperatures, so the same latents,
    decoded by the int8 graph into images the shipped classifier reads as the fp32 ones."""
    from cvae_sdk.evaluate import EvalClassifier

    cpu = ["CPUExecutionProvider"]
    fp32, int8 = Generator.from_pretrained(providers=cpu), Generator.from_pretrained(variant="int8", providers=cpu)
    assert int8.model_path == shipped_model_path().with_name("mnist-cvae.int8.onnx")
    assert int8.config.quantization == "int8-static"
    np.testing.assert_array_equal(int8.config.prior.scale_tril, fp32.config.prior.scale_tril)
    assert int8.config.class_temperatures == fp32.config.class_temperatures
    a, b = fp32.generate(list(range(10)), 50, rng=0), int8.generate(list(range(10)), 50, rng=0)
    np.testing.assert_array_equal(a.latents, b.latents)
    assert np.abs(a.samples - b.samples).mean() < 0.02
    classifier = EvalClassifier.load(shipped_model_path().with_name("mnist-classifier.onnx"))
    (read_a, _), (read_b, _) = classifier.predict(a.samples), classifier.predict(b.samples)
    assert (read_a == read_b).mean() >= 0.98 and (read_b == b.labels).mean() >= 0.96


def test_golden_slice() -> None:
    out = Generator.from_pretrained(threads=1).generate(list(range(10)), 1, rng=0)
    np.testing.assert_allclose(out.samples[:, 0, 14, 12:16], GOLDEN_ROW_14, atol=1e-5)
    np.testing.assert_allclose(out.latents[0, :4], GOLDEN_LATENT_0, atol=1e-5)
