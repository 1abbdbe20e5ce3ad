"""The shipped MNIST model: it loads offline, describes itself, and reproduces a golden slice."""

from __future__ import annotations

import numpy as np

from cvae_sdk import Generator, shipped_model_path

# generate(range(10), 1, rng=0).samples[:, 0, 14, 12:16] of exported/mnist-cvae.onnx on CPU
GOLDEN_ROW_14 = np.array([
    [0.000125, 0.000002, 0.000000, 0.000003],
    [0.646319, 0.991688, 0.987071, 0.761699],
    [0.542059, 0.212811, 0.170199, 0.604863],
    [0.000859, 0.008098, 0.097469, 0.550854],
    [0.989747, 0.979768, 0.972490, 0.970796],
    [0.703293, 0.142431, 0.002905, 0.000048],
    [0.876554, 0.697736, 0.706559, 0.696717],
    [0.076019, 0.003702, 0.017055, 0.499970],
    [0.000848, 0.000091, 0.001039, 0.017207],
    [0.520304, 0.599581, 0.826169, 0.964389],
], dtype=np.float32)
GOLDEN_LATENT_0 = np.array([0.592683, 0.499006, 0.117457, 1.263537], dtype=np.float32)


def test_shipped_model_is_small_and_self_describing() -> None:
    path = shipped_model_path()
    assert path.name == "mnist-cvae.onnx" and path.stat().st_size < 10 * 1024 * 1024
    gen = Generator.from_pretrained()
    cfg = gen.config
    assert cfg.num_classes == 10 and cfg.class_names == tuple(str(i) for i in range(10))
    assert cfg.sample_shape == (1, 28, 28) and cfg.latent_dim == 16
    # the defaults made it: a prior of the training images' codes (21,911 less the 91 export dropped), per-digit
    # temperatures from export's calibration, the sub-pixel decoder
    assert cfg.prior.source == "aggregate" and cfg.prior.diagonal and int((cfg.prior.weights > 0).sum()) == 21_820
    assert cfg.class_temperatures == (2.0, 2.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.0)
    assert cfg.model_config["arch"] == "conv" and cfg.model_config["upsample"] == "subpixel"
    assert cfg.output_contrast == 1.2  # chosen at export
    assert cfg.train_config["seed"] == 0 and cfg.train_config["epochs"] is None and cfg.train_config["beta"] == 0.25


def test_shipped_int8_variant_draws_the_same_digits() -> None:
    """variant="int8" loads mnist-cvae.int8.onnx: the same prior and temperatures, so the same latents,
    decoded by the int8 graph into images the shipped classifier reads as the fp32 ones."""
    from cvae_sdk.quality import EvalClassifier

    cpu = ["CPUExecutionProvider"]
    fp32, int8 = Generator.from_pretrained(providers=cpu), Generator.from_pretrained(variant="int8", providers=cpu)
    assert int8.model_path == shipped_model_path().with_name("mnist-cvae.int8.onnx")
    assert int8.config.quantization == "int8-static"
    np.testing.assert_array_equal(int8.config.prior.scales, fp32.config.prior.scales)
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
