"""The CUDA fast path, exercised on CPU: bucket and graph-shape bookkeeping, IO binding with padding,
uint8 and device outputs, provider selection and the errors a machine without a GPU gives.

``BoundRunner`` takes a device; on ``cpu`` the same binding, padding, graph-id and DLPack code
runs against a real onnxruntime session (the CPU provider ignores graph ids), so everything but
the capture itself is checked here. CUDA numbers come from ``cvae-sdk bench`` on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cvae_sdk import Generator, ProviderUnavailableError
from cvae_sdk.fastpath import TO_UINT8, BoundRunner, DeviceSamples, GraphBuckets, GraphShapeError
from cvae_sdk.providers import CPU, CUDA, check_loaded, cuda_options, requested_providers


@pytest.fixture(scope="module")
def plain(tiny_model: Path) -> Generator:
    return Generator.from_pretrained(tiny_model, providers=[CPU], threads=1)


def _bound(plain: Generator, max_batch: int = 16, graphs: bool = True) -> Generator:
    """The tiny model served through the fast path's runner, on the CPU device."""
    session = ort.InferenceSession(str(plain.model_path), providers=[CPU])
    runner = BoundRunner(session, plain.config, device="cpu", graphs=graphs, max_batch=max_batch)
    return Generator(session, plain.config, plain.model_path, chunk_size=max_batch, runner=runner)


def test_buckets_are_powers_of_two_up_to_the_maximum() -> None:
    assert GraphBuckets(4096).sizes == [2 ** i for i in range(13)]
    buckets = GraphBuckets(100)
    assert buckets.sizes == [1, 2, 4, 8, 16, 32, 64, 100]
    assert [buckets.bucket(n) for n in (1, 3, 64, 65, 100)] == [1, 4, 64, 100, 100]
    assert [buckets.graph_id(b) for b in buckets.sizes] == list(range(8))
    for bad in (0, 101):
        with pytest.raises(ValueError, match="takes 1..100 rows"):
            buckets.bucket(bad)
    with pytest.raises(ValueError, match="not a bucket"):
        buckets.graph_id(3)
    with pytest.raises(ValueError, match="max_batch must be a positive int"):
        GraphBuckets(0)


def test_a_graph_id_is_never_replayed_with_other_shapes() -> None:
    buckets = GraphBuckets(64)
    shapes = ((8, 4), (8, 3), (8, 1, 12, 12))
    buckets.check_replay(3, shapes)
    buckets.check_replay(3, shapes)  # a replay with its own shapes is fine
    with pytest.raises(GraphShapeError, match="captured with shapes .* replayed with"):
        buckets.check_replay(3, ((8, 4), (8, 3), (8, 1, 10, 10)))
    buckets.check_replay(4, ((16, 4), (16, 3), (16, 1, 12, 12)))  # another id records its own


def test_bound_runs_match_plain_runs_and_record_one_shape_per_graph(plain: Generator) -> None:
    fast = _bound(plain)
    for n in (1, 3, 7, 16, 40):  # padded into buckets; 40 is split into chunks of 16
        want = plain.generate([0, 1, 2], n, rng=n)
        got = fast.generate([0, 1, 2], n, rng=n)
        np.testing.assert_allclose(got.samples, want.samples, atol=1e-6)
        assert got.labels.tolist() == want.labels.tolist()
    runner = fast._runner
    assert runner is not None
    for graph_id, (z, y, samples) in runner.buckets.captured.items():
        rows = runner.buckets.sizes[graph_id]
        assert z == (rows, 4) and y == (rows, 3) and samples == (rows, 1, 12, 12)


def test_uint8_is_converted_where_the_samples_are(plain: Generator) -> None:
    fast = _bound(plain)
    got = fast.generate([0, 2], 5, rng=3, output_type="uint8").samples
    want = plain.generate([0, 2], 5, rng=3, output_type="uint8").samples
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    x = np.random.default_rng(0).random((64, 1, 4, 4), dtype=np.float32)
    kernel = ort.InferenceSession(str(TO_UINT8), providers=[CPU]).run(None, {"samples": x})[0]
    assert np.array_equal(kernel, (x * np.float32(255) + np.float32(0.5)).astype(np.uint8))


def test_device_output_hands_over_through_dlpack(plain: Generator) -> None:
    fast = _bound(plain)
    out = fast.generate([1], 6, rng=9, output_type="device")
    assert isinstance(out.samples, DeviceSamples) and out.samples.shape == (6, 1, 12, 12) and len(out.samples) == 6
    assert out.samples.__dlpack_device__() == (1, 0)  # kDLCPU here; (2, id) on CUDA
    np.testing.assert_allclose(np.from_dlpack(out.samples), plain.generate([1], 6, rng=9).samples, atol=1e-6)
    chunks = list(fast.iter_chunks([1], 40, rng=9, output_type="device"))
    assert [len(c.samples) for c in chunks] == [16, 16, 8]
    with pytest.raises(ValueError, match="at most chunk_size=16 .* iter_chunks"):
        fast.generate([1], 17, output_type="device")


def test_device_output_without_cuda_names_the_fix(plain: Generator) -> None:
    with pytest.raises(ValueError, match="needs the CUDA execution provider; this Generator runs on "
                                         r"\['CPUExecutionProvider'\]"):
        plain.generate([0], 2, output_type="device")
    with plain.batcher() as batcher, pytest.raises(ValueError, match="output_type='device' is for"):
        batcher.submit(0, output_type="device")


def test_provider_selection() -> None:
    assert requested_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert requested_providers("auto", [CPU]) == [CPU]
    with pytest.raises(ProviderUnavailableError, match="install 'cvae-sdk\\[gpu\\]'"):
        requested_providers([CUDA], [CPU])
    assert cuda_options(CUDA, graphs=True) == (CUDA, {"cudnn_conv_algo_search": "HEURISTIC",
                                                      "enable_cuda_graph": "1"})
    assert cuda_options(CUDA, graphs=False)[1]["enable_cuda_graph"] == "0"  # type: ignore[index]
    mine = (CUDA, {"device_id": "1"})
    assert cuda_options(mine, graphs=True) is mine and cuda_options(CPU, graphs=True) == CPU


def test_a_silent_cpu_fallback_is_refused_when_cuda_was_asked_for() -> None:
    """onnxruntime-gpu on a machine without a GPU lists CUDA, then quietly runs on CPU."""
    with pytest.raises(ProviderUnavailableError, match="requested but did not load"):
        check_loaded([(CUDA, {}), CPU], [CPU], auto=False)
    check_loaded([CUDA, CPU], [CPU], auto=True)  # "auto" may fall back


def test_explicit_cuda_on_this_build_fails_loudly(tiny_model: Path) -> None:
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime lists CUDA; the CPU-build behaviour is what is tested here")
    with pytest.raises(ProviderUnavailableError, match="'CUDAExecutionProvider' is not available"):
        Generator.from_pretrained(tiny_model, providers=[CUDA])
    assert Generator.from_pretrained(tiny_model)._runner is None  # auto: plain CPU runs


def test_shipped_kernels_match_their_builder() -> None:
    from training.kernels import KERNELS, build

    for name, data in build().items():
        assert (KERNELS / name).read_bytes() == data, f"rebuild with: python -m training.kernels ({name})"
