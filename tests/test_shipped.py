"""The shipped MNIST model: it loads offline, describes itself, and reproduces a golden slice."""

from __future__ import annotations

import numpy as np

from cvae_sdk import Generator, shipped_model_path

# generate(range(10), 1, rng=0).samples[:, 0, 14, 12:16] of exported/mnist-cvae.onnx on CPU
GOLDEN_ROW_14 = np.array([
    [0.239099, 0.018746, 0.002490, 0.001649],
    [0.977302, 0.996274, 0.995820, 0.996659],
    [0.029742, 0.080126, 0.118310, 0.313392],
    [0.986138, 0.985602, 0.989716, 0.981074],
    [0.934928, 0.925155, 0.806046, 0.862109],
    [0.938574, 0.927892, 0.921209, 0.943174],
    [0.008908, 0.530638, 0.981112, 0.989342],
    [0.251297, 0.211074, 0.368992, 0.736830],
    [0.579640, 0.936248, 0.953892, 0.928355],
    [0.000050, 0.000010, 0.000018, 0.000392],
], dtype=np.float32)
GOLDEN_LATENT_0 = np.array([1.169577, 1.397575, 0.305613, -0.007773], dtype=np.float32)


def test_shipped_model_is_small_and_self_describing() -> None:
    path = shipped_model_path()
    assert path.name == "mnist-cvae.onnx" and path.stat().st_size < 10 * 1024 * 1024
    gen = Generator.from_pretrained()
    cfg = gen.config
    assert cfg.num_classes == 10 and cfg.class_names == tuple(str(i) for i in range(10))
    assert cfg.sample_shape == (1, 28, 28) and cfg.latent_dim == 16
    assert cfg.prior.source == "aggregate" and cfg.prior.num_components == 64
    # the defaults made it: per-digit temperatures from export's calibration, the sub-pixel decoder
    assert cfg.class_temperatures == (1.0, 1.0, 0.85, 0.85, 1.0, 0.85, 1.0, 0.85, 0.75, 0.9)
    assert cfg.model_config["arch"] == "conv" and cfg.model_config["upsample"] == "subpixel"
    assert cfg.output_contrast == 1.1  # chosen at export
    assert cfg.train_config["seed"] == 0 and cfg.train_config["epochs"] is None and cfg.train_config["beta"] == 0.25


def test_shipped_int8_variant_draws_the_same_digits() -> None:
    """variant="int8" loads mnist-cvae.int8.onnx: the same prior and temperatures, so the same latents,
    decoded by the int8 graph into images the shipped classifier reads as the fp32 ones."""
    from cvae_sdk.quality import EvalClassifier

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
