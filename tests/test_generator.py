"""The runtime Generator on a real onnxruntime session: API, determinism, threads, providers, errors."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
import pytest

from cvae_sdk import ArtifactError, Generator, ProviderUnavailableError
from cvae_sdk.latents import COMPONENT_STREAM, NORMAL_STREAM, block_stream


@pytest.fixture(scope="module")
def gen(tiny_model: Path) -> Generator:
    return Generator.from_pretrained(tiny_model, providers=["CPUExecutionProvider"], threads=1)


def test_generate_shapes_order_and_range(gen: Generator) -> None:
    out = gen.generate([2, 0], num_samples_per_label=4, rng=0)
    assert out.samples.shape == (8, 1, 12, 12) and out.samples.dtype == np.float32
    assert out.labels.tolist() == [2, 2, 2, 2, 0, 0, 0, 0] and out.labels.dtype == np.int64
    assert out.latents.shape == (8, 4) and out.latents.dtype == np.float32
    assert 0.0 <= out.samples.min() and out.samples.max() <= 1.0


def test_labels_by_name_array_and_int(gen: Generator) -> None:
    a = gen.generate(["bottom", "top"], 3, rng=5)
    b = gen.generate(np.array([2, 0]), 3, rng=5)
    assert np.array_equal(a.samples, b.samples) and np.array_equal(a.labels, b.labels)
    assert gen.generate(1, 2, rng=0).labels.tolist() == [1, 1]


def test_same_rng_same_samples_across_chunk_sizes(tiny_model: Path) -> None:
    ref = Generator.from_pretrained(tiny_model, chunk_size=4096).generate([0, 1, 2], 1500, rng=42)
    for chunk in (1, 7, 1000):
        other = Generator.from_pretrained(tiny_model, chunk_size=chunk).generate([0, 1, 2], 1500, rng=42)
        assert np.array_equal(ref.samples, other.samples) and np.array_equal(ref.latents, other.latents)


def test_sample_i_does_not_depend_on_the_request_size(gen: Generator) -> None:
    small = gen.generate(1, 3, rng=9).samples
    large = gen.generate(1, 2000, rng=9).samples
    assert np.array_equal(small, large[:3])


def test_different_seeds_differ_and_generator_objects_advance(gen: Generator) -> None:
    assert not np.array_equal(gen.generate(0, 4, rng=1).samples, gen.generate(0, 4, rng=2).samples)
    rng = np.random.default_rng(0)
    assert not np.array_equal(gen.generate(0, 4, rng=rng).samples, gen.generate(0, 4, rng=rng).samples)
    again = np.random.default_rng(0)
    assert np.array_equal(gen.generate(0, 4, rng=np.random.default_rng(0)).samples,
                          gen.generate(0, 4, rng=again).samples)


def test_global_numpy_rng_is_untouched(gen: Generator) -> None:
    np.random.seed(123)  # noqa: NPY002 - the legacy global RNG is what must stay untouched
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    gen.generate([0, 1], 10, rng=None)
    gen.generate([0, 1], 10, rng=3)
    assert np.array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def test_eight_threads_match_serial(gen: Generator) -> None:
    requests = [([i % 3, (i + 1) % 3], 1 + i % 5, i) for i in range(64)]
    serial = [gen.generate(labels, n, rng=seed).samples for labels, n, seed in requests]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda r: gen.generate(r[0], r[1], rng=r[2]).samples, requests))
    assert all(np.array_equal(a, b) for a, b in zip(serial, threaded, strict=True))


def test_reused_stream_equals_a_fresh_philox_stream() -> None:
    # block_stream re-keys one Generator per thread; every stream must still be the one a new
    # Philox at counter (0, stream, block, 0) gives, whatever was drawn from the thread's last one
    keys = [np.array([0, 0], dtype=np.uint64), np.array([2**64 - 1, 12345], dtype=np.uint64)]
    for key in keys:
        for block, stream in [(0, NORMAL_STREAM), (0, COMPONENT_STREAM), (7, NORMAL_STREAM), (2**40, 1)]:
            fresh = np.random.Generator(np.random.Philox(key=key, counter=[0, stream, block, 0]))
            expected = (fresh.standard_normal(33, dtype=np.float32), fresh.random(5))
            block_stream(key[::-1].copy(), block + 1, stream).standard_normal(3, dtype=np.float32)  # half-used
            reused = block_stream(key, block, stream)
            got = (reused.standard_normal(33, dtype=np.float32), reused.random(5))
            assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_temperature_zero_gives_the_prior_mean(gen: Generator) -> None:
    out = gen.generate([0, 1, 2], 3, rng=0, temperature=0.0)
    means = gen.config.prior.means.astype(np.float32)  # (K, M, D): each z is one of its class's component means
    gaps = np.abs(out.latents[:, None, :] - means[out.labels]).max(axis=2).min(axis=1)
    assert (gaps <= 1e-6).all()
    centre = gen.generate([0], 200, rng=0, temperature=0.0).latents  # the same components are drawn
    spread = gen.generate([0], 200, rng=0, temperature=2.0).latents - centre
    base = gen.generate([0], 200, rng=0, temperature=1.0).latents - centre
    assert np.allclose(spread, 2 * base, atol=1e-5)


def test_latents_escape_hatch(gen: Generator) -> None:
    z = np.zeros((4, 4), dtype=np.float64)
    out = gen.generate([0, 1], 2, latents=z)
    assert np.array_equal(out.latents, z.astype(np.float32))
    assert np.array_equal(out.samples[0], out.samples[1])


def test_output_types(gen: Generator) -> None:
    as_float = gen.generate(0, 3, rng=1).samples
    as_uint8 = gen.generate(0, 3, rng=1, output_type="uint8").samples
    assert as_uint8.dtype == np.uint8
    assert np.abs(as_uint8.astype(np.int16) - np.round(as_float * 255).astype(np.int16)).max() <= 1
    images = gen.generate(0, 2, rng=1, output_type="pil").samples
    assert len(images) == 2 and images[0].size == (12, 12) and images[0].mode == "L"


def test_iter_chunks_concatenate_to_generate(tiny_model: Path) -> None:
    gen = Generator.from_pretrained(tiny_model, chunk_size=100)
    whole = gen.generate([0, 2], 250, rng=4).samples
    parts = [c.samples for c in gen.iter_chunks([0, 2], 250, rng=4, start=130, stop=480)]
    assert np.array_equal(np.concatenate(parts), whole[130:480])


def test_iter_chunks_across_prior_blocks(tiny_model: Path) -> None:
    """A stream longer than one block of prior draws keeps chunk boundaries and generate's samples."""
    gen = Generator.from_pretrained(tiny_model, chunk_size=1000)
    whole = gen.generate([0, 2], 3000, rng=5)
    chunks = list(gen.iter_chunks([0, 2], 3000, rng=5, start=130, stop=5900))
    assert [len(c.samples) for c in chunks] == [1000] * 5 + [770]
    assert np.array_equal(np.concatenate([c.latents for c in chunks]), whole.latents[130:5900])
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), whole.samples[130:5900])


def test_interpolation_between_labels(gen: Generator) -> None:
    out = gen.interpolate("top", "bottom", steps=6, rng=0)
    assert out.samples.shape == (6, 1, 12, 12)
    assert out.labels.tolist() == [0, 0, 0, 2, 2, 2]
    ends = gen.generate([0], 1, latents=out.latents[:1]).samples
    assert np.allclose(ends[0], out.samples[0], atol=1e-6)
    z_path = gen.interpolate(1, 1, steps=3, latents=np.stack([np.zeros(4), np.ones(4)]))
    assert np.allclose(z_path.latents[1], 0.5)


def test_providers_are_read_back(gen: Generator) -> None:
    assert gen.providers == ["CPUExecutionProvider"]
    assert Generator.from_pretrained(gen.model_path).providers[-1] == "CPUExecutionProvider"


def test_requested_cuda_that_cannot_load_is_an_error(tiny_model: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider"):
        Generator.from_pretrained(tiny_model, providers=["CUDAExecutionProvider"])


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda g: g.generate([3]), ValueError, r"out of range; labels must lie in \[0, 2\]"),
    (lambda g: g.generate([-1]), ValueError, "out of range"),
    (lambda g: g.generate([1.5]), TypeError, "ints or class names"),
    (lambda g: g.generate([float("nan")]), TypeError, "ints or class names"),
    (lambda g: g.generate([True]), TypeError, "ints or class names"),
    (lambda g: g.generate(["left"]), ValueError, "unknown class name 'left'; known classes"),
    (lambda g: g.generate([]), ValueError, "labels is empty"),
    (lambda g: g.generate(np.array([0.0, 1.0])), TypeError, "integer or string array"),
    (lambda g: g.generate([0], 0), ValueError, "num_samples_per_label must be an int >= 1"),
    (lambda g: g.generate([0], -2), ValueError, "num_samples_per_label must be an int >= 1"),
    (lambda g: g.generate([0], 2, latents=np.zeros((2, 3))), ValueError, r"shape \(2, 4\)"),
    (lambda g: g.generate([0], 1, latents=np.zeros((1, 4), dtype=np.int64)), TypeError, "float array"),
    (lambda g: g.generate([0], 1, latents=np.full((1, 4), np.nan)), ValueError, "NaN or inf"),
    (lambda g: g.generate([0], 1, latents=np.zeros((1, 4)), rng=3), ValueError, "rng and temperature would not"),
    (lambda g: g.generate([0], 1, latents=np.zeros((1, 4)), temperature=0.5), ValueError, "pass latents alone"),
    (lambda g: g.interpolate(0, 1, latents=np.zeros((2, 4)), rng=1), ValueError, "rng and temperature would not"),
    (lambda g: g.generate([0], temperature=-1.0), ValueError, "temperature must be finite and in \\[0, 10\\]"),
    (lambda g: g.generate([0], temperature=float("inf")), ValueError, "temperature must be finite"),
    (lambda g: g.generate([0], output_type="jpeg"), ValueError, "output_type must be one of"),
    (lambda g: g.generate([0], rng="seed"), TypeError, "rng must be"),
])
def test_bad_input_is_explained(gen: Generator, call, error: type[Exception], message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        call(gen)


def test_bad_model_files(tmp_path: Path, tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Generator.from_pretrained(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(tiny_model.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        Generator.from_pretrained(corrupt)
    with pytest.raises(ValueError, match="unknown|not available"):
        Generator.from_pretrained(tiny_model, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match=r"no int8 variant .*cvae-sdk export RUN --out .* --int8"):
        Generator.from_pretrained(tiny_model, variant="int8")
    with pytest.raises(ValueError, match="variant must be one of int8, fp16"):
        Generator.from_pretrained(tiny_model, variant="int4")  # type: ignore[arg-type]


def test_batcher_results_equal_generate_under_concurrency(gen: Generator) -> None:
    requests = [((i % 3,), 1 + i % 3, i) for i in range(64)]
    with gen.batcher(max_batch=32, max_delay_ms=5) as batcher:
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            futures = list(pool.map(lambda r: batcher.submit(list(r[0]), r[1], rng=r[2]), requests))
        results = [f.result(timeout=60) for f in futures]
    for (labels, n, seed), got in zip(requests, results, strict=True):
        want = gen.generate(list(labels), n, rng=seed)
        assert np.array_equal(got.samples, want.samples) and np.array_equal(got.latents, want.latents)
        assert got.labels.tolist() == want.labels.tolist()


def test_batcher_closes_a_batch_once_arrivals_pause(gen: Generator) -> None:
    sizes: list[int] = []
    with gen.batcher(max_batch=256, max_delay_ms=600_000, on_batch=sizes.append) as batcher:
        lone = batcher.submit(1, 2, rng=5).result(timeout=60)  # not held for the ten-minute delay
        assert np.array_equal(lone.samples, gen.generate(1, 2, rng=5).samples)
        with pytest.raises(ValueError, match="max_gap_ms"):
            gen.batcher(max_gap_ms=-1)
    assert sizes == [2]


def test_batcher_validates_in_the_caller_and_closes(gen: Generator) -> None:
    batcher = gen.batcher(max_batch=4, max_delay_ms=1)
    with pytest.raises(ValueError, match="out of range"):
        batcher.submit(7)
    assert batcher.submit(0, 2, rng=1, output_type="uint8").result(timeout=60).samples.dtype == np.uint8
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(0)
    with pytest.raises(ValueError, match="max_batch"):
        gen.batcher(max_batch=0)


def test_the_public_surface_is_what_readme_documents() -> None:
    public = {name for name in dir(Generator) if not name.startswith("_")}
    assert public == {"from_pretrained", "generate", "iter_chunks", "interpolate", "batcher", "config",
                      "model_path", "providers", "cuda_graphs", "close"}


SAMPLES_TYPES = """
from cvae_sdk import Generator
gen = Generator.from_pretrained()
reveal_type(gen.generate([3]).samples)
reveal_type(gen.generate([3], output_type="uint8").samples)
reveal_type(gen.generate([3], output_type="pil").samples)
reveal_type(gen.generate([3], output_type="device").samples)
reveal_type(next(gen.iter_chunks([3])).samples)
reveal_type(gen.interpolate(3, 8, output_type="pil").samples)
"""


def test_samples_are_typed_by_the_output_type(tmp_path: Path) -> None:
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(SAMPLES_TYPES)
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", str(probe)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])
    revealed = [line.split("Revealed type is ")[1].strip('"') for line in done.stdout.splitlines()
                if "Revealed type is" in line]
    assert [r.split("[")[0] for r in revealed] == ["numpy.ndarray", "numpy.ndarray", "list",
                                                   "cvae_sdk.fastpath.DeviceSamples", "numpy.ndarray",
                                                   "list"], done.stdout
