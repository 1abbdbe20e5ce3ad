"""The CUDA fast path on a real GPU: parity with the CPU provider, CUDA-graph replay, threads, device
and uint8 outputs, fp16, memory release, and the batcher and server on CUDA.

Every comparison is against a real onnxruntime session; tolerances are stated where bytes cannot
match (CPU and GPU kernels sum in different orders), and bytes must match wherever the same GPU
computes the same thing.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cvae_sdk import Generator, shipped_model_path
from cvae_sdk.checks import to_uint8

from .conftest import CUDA, CUDA_FP32

BUCKET_SIZES = (1, 3, 4, 5, 16, 17, 1000, 65536)  # bucket edges and the largest bucket
PARITY_ATOL = 1e-4  # pixels in [0, 1]: float32 GPU against float32 CPU, TF32 off
MIB = 1 << 20


def _cuda(model: Path, **options: object) -> Generator:
    gen = Generator.from_pretrained(model, providers=CUDA_FP32, **options)  # type: ignore[arg-type]
    assert gen.providers[0] == CUDA
    return gen


def _labels(gen: Generator, n: int) -> np.ndarray:
    return np.arange(n) % gen.config.num_classes


@pytest.fixture(scope="module", params=["shipped", "tiny"])
def model(request: pytest.FixtureRequest) -> Path:
    path: Path = shipped_model_path() if request.param == "shipped" else request.getfixturevalue("tiny_model")
    return path


@pytest.fixture(scope="module")
def pair(model: Path) -> Iterator[tuple[Generator, Generator]]:
    """The model on CUDA (graphs on) and on the CPU provider."""
    with _cuda(model) as gpu, Generator.from_pretrained(model, providers=["CPUExecutionProvider"]) as cpu:
        yield gpu, cpu


@pytest.mark.parametrize("n", BUCKET_SIZES)
def test_cuda_samples_equal_the_cpu_providers(pair: tuple[Generator, Generator], n: int,
                                              record_property: pytest.RecordProperty) -> None:
    gpu, cpu = pair
    assert gpu.cuda_graphs
    labels = _labels(gpu, n)
    got = gpu.generate(labels, 1, rng=n).samples
    want = cpu.generate(labels, 1, rng=n).samples
    diff = float(np.abs(got - want).max())
    record_property("max_abs_diff", diff)
    assert got.shape == want.shape and got.dtype == np.float32
    assert diff <= PARITY_ATOL, f"batch {n}: max |CUDA - CPU| = {diff:.2e} > {PARITY_ATOL}"


def test_graph_replays_in_any_order_equal_a_fresh_session(model: Path, tiny_model: Path) -> None:
    """Buckets replayed in random order, interleaved with graph-less device runs and another Generator
    on the same GPU, give the bytes a fresh Generator gives for each request alone."""
    rng = np.random.default_rng(0)
    requests = [int(n) for n in rng.permutation(np.repeat(BUCKET_SIZES[:-1], 3))]
    with _cuda(model) as gen, _cuda(tiny_model) as other:
        got = []
        for i, n in enumerate(requests):
            got.append(gen.generate(_labels(gen, n), 1, rng=i).samples)
            gen.generate(_labels(gen, 7), 1, rng=i, output_type="device")  # a plain run in between
            other.generate(_labels(other, 1 + i % 20), 1, rng=i)             # another session's graphs
    for i, n in enumerate(requests):
        with _cuda(model) as fresh:
            want = fresh.generate(_labels(fresh, n), 1, rng=i).samples
        assert np.array_equal(got[i], want), f"request {i} ({n} rows) differs from a fresh session"


def test_threads_sharing_one_generator_equal_serial_calls(model: Path) -> None:
    requests = [(n, seed) for seed, n in enumerate((1, 3, 17, 64, 5, 300, 1, 16) * 4)]
    with _cuda(model) as gen:
        serial = [gen.generate(_labels(gen, n), 1, rng=seed).samples for n, seed in requests]
        with ThreadPoolExecutor(max_workers=8) as pool:
            threaded = list(pool.map(lambda r: gen.generate(_labels(gen, r[0]), 1, rng=r[1]).samples, requests))
    for (n, _), a, b in zip(requests, serial, threaded, strict=True):
        assert np.array_equal(a, b), f"{n} rows: threaded result differs from the serial one"


def test_device_output_hands_over_to_torch_without_a_copy_and_stays_valid(model: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    with _cuda(model) as gen:
        labels = _labels(gen, 40)
        out = gen.generate(labels, 1, rng=3, output_type="device")
        tensor = torch.from_dlpack(out.samples)
        assert tensor.is_cuda and tuple(tensor.shape) == out.samples.shape
        assert tensor.data_ptr() == out.samples.data_ptr  # the same memory: no copy
        kept = tensor.cpu().numpy().copy()
        np.testing.assert_allclose(kept, gen.generate(labels, 1, rng=3).samples, rtol=0, atol=1e-6)
        for seed in range(10):  # later calls, device ones too, never write into the handed-over buffer
            gen.generate(_labels(gen, 40), 1, rng=100 + seed, output_type="device")
            gen.generate(_labels(gen, 1 + seed), 1, rng=200 + seed)
        torch.cuda.synchronize()
        assert np.array_equal(tensor.cpu().numpy(), kept)


def test_uint8_on_the_gpu_equals_the_host_conversion(pair: tuple[Generator, Generator]) -> None:
    gpu, cpu = pair
    for n in (1, 17, 1000):
        labels = _labels(gpu, n)
        got = gpu.generate(labels, 1, rng=n, output_type="uint8").samples
        assert got.dtype == np.uint8
        assert np.array_equal(got, to_uint8(gpu.generate(labels, 1, rng=n).samples))
        cpu_uint8 = cpu.generate(labels, 1, rng=n, output_type="uint8").samples
        assert int(np.abs(got.astype(np.int16) - cpu_uint8).max()) <= 1  # rounding at a pixel-level edge


def test_fp16_artifact_passes_its_fidelity_gate_on_the_gpu(tmp_path: Path,
                                                           record_property: pytest.RecordProperty) -> None:
    onnx = pytest.importorskip("onnx")
    from cvae_sdk_training.quantize import MAX_FIDELITY_DROP, _fp16, fidelity_gate

    from cvae_sdk.quality import EvalClassifier

    fp16 = tmp_path / "mnist-cvae.fp16.onnx"
    onnx.save(_fp16(onnx.load(str(shipped_model_path()))), str(fp16))
    classifier = EvalClassifier.load(shipped_model_path().parent / "mnist-classifier.onnx")
    gate = fidelity_gate(shipped_model_path(), fp16, classifier, 1000, 0, providers=CUDA_FP32)
    for key in ("fp32_fidelity", "variant_fidelity", "max_abs_pixel_diff"):
        record_property(key, gate[key])
    assert gate["passed"] and gate["fidelity_drop"] <= MAX_FIDELITY_DROP, gate
    with _cuda(fp16) as gen:
        assert gen.cuda_graphs  # every node of the fp16 graph runs on CUDA, so it is captured


def test_closed_or_discarded_generators_give_their_gpu_memory_back(record_property: pytest.RecordProperty) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here: no device-wide free-memory reading")

    def use(gen: Generator) -> None:
        for n in (1, 100, 5000):
            gen.generate(_labels(gen, n), 1, rng=n)
        gen.generate(_labels(gen, 64), 1, rng=0, output_type="device")

    with _cuda(shipped_model_path()) as warm:  # loads CUDA, cuDNN and cuBLAS once
        use(warm)
    gc.collect()
    threads, free = threading.active_count(), torch.cuda.mem_get_info()[0]
    held = []
    for i in range(6):
        gen = _cuda(shipped_model_path())
        use(gen)
        held.append((free - torch.cuda.mem_get_info()[0]) / MIB)
        if i % 2:
            gen.close()
        del gen  # the even ones are only dropped
        gc.collect()
    leaked = (free - torch.cuda.mem_get_info()[0]) / MIB
    record_property("mib_held_while_open", max(held))
    record_property("mib_after_six_generators", leaked)
    assert max(held) > 16, "an open Generator should hold device memory (buffers, graphs)"
    assert leaked < 64, f"{leaked:.0f} MiB of GPU memory still held after six Generators were closed or dropped"
    assert threading.active_count() == threads, "owner threads outlived their Generators"
    with pytest.raises(RuntimeError, match="closed"):
        closed = _cuda(shipped_model_path())
        closed.close()
        closed.generate([0], 1)


def test_micro_batcher_on_cuda_matches_the_library(record_property: pytest.RecordProperty) -> None:
    """Concurrent requests share bucketed runs; on a GPU a request's rows may then run in a larger
    bucket than alone, where cuBLAS/cuDNN can pick another kernel: equal to a stated tolerance."""
    with _cuda(shipped_model_path()) as gen, gen.batcher(max_batch=64, max_delay_ms=2.0) as batcher:
        requests = [(i % 10, 1 + i % 3, 1000 + i) for i in range(96)]
        futures = [batcher.submit(label, n, rng=seed) for label, n, seed in requests]
        diffs, same = [], 0
        for (label, n, seed), future in zip(requests, futures, strict=True):
            got, want = future.result(timeout=60).samples, gen.generate(label, n, rng=seed).samples
            diffs.append(float(np.abs(got - want).max()))
            same += int(np.array_equal(got, want))
    record_property("max_abs_diff", max(diffs))
    record_property("bit_identical_requests", f"{same}/{len(requests)}")
    assert max(diffs) <= PARITY_ATOL


def test_serve_on_cuda_answers_with_the_librarys_bytes() -> None:
    pytest.importorskip("fastapi")
    from test_serve import Server, _npy, request

    server = Server(shipped_model_path(), "--provider", CUDA)
    try:
        assert CUDA in request(server, "GET", "/v1/model")[2].decode()
        with Generator.from_pretrained(shipped_model_path(), providers=[CUDA]) as gen:  # the server's options
            for dtype, output_type in (("float32", "np"), ("uint8", "uint8")):
                body = {"labels": [2, 7], "num_samples_per_label": 3, "seed": 11, "output": "npy", "dtype": dtype}
                status, _, data = request(server, "POST", "/v1/generate", body)
                want = gen.generate([2, 7], 3, rng=11, output_type=output_type).samples  # type: ignore[call-overload]
                got = _npy(data)
                assert status == 200 and got.dtype == want.dtype and np.array_equal(got, want)
    finally:
        server.stop()
