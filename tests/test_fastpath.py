"""The CUDA fast path, exercised on CPU: bucket and graph-shape bookkeeping, IO binding with padding,
uint8 and device outputs, provider selection and the errors a machine without a GPU gives.

``BoundRunner`` takes a device; on ``cpu`` the same binding, padding, graph-id and DLPack code
runs against a real onnxruntime session (the CPU provider ignores graph ids), so everything but
the capture itself is checked here. CUDA numbers come from ``cvae-sdk bench`` on a GPU machine.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cvae_sdk import Generator, ProviderUnavailableError, fastpath
from cvae_sdk.fastpath import TAKE_ROWS, BoundRunner, DeviceSamples, GraphBuckets, GraphShapeError
from cvae_sdk.providers import CPU, CUDA, check_loaded, cuda_options, requested_providers


@pytest.fixture(scope="module")
def plain(tiny_model: Path) -> Generator:
    return Generator.from_pretrained(tiny_model, providers=[CPU], threads=1)


class _ThreadRecordingSession:
    """A real onnxruntime session that also records which thread made each run."""

    def __init__(self, path: Path) -> None:
        self.session = ort.InferenceSession(str(path), providers=[CPU])
        self.threads: set[int] = set()

    def __getattr__(self, name: str) -> object:
        return getattr(self.session, name)

    def run_with_iobinding(self, *args: object) -> None:
        self.threads.add(threading.get_ident())
        self.session.run_with_iobinding(*args)


def _bound(plain: Generator, max_batch: int = 16, graphs: bool = True) -> Generator:
    """The tiny model served through the fast path's runner, on the CPU device (a session per bucket)."""
    opened: list[_ThreadRecordingSession] = []

    def open_session(graphs: bool) -> ort.InferenceSession:
        opened.append(_ThreadRecordingSession(plain.model_path))
        return opened[-1]  # type: ignore[return-value]

    session = open_session(False)
    runner = BoundRunner(open_session, session, plain.config, device="cpu", graphs=graphs, max_batch=max_batch)
    runner.opened = opened  # type: ignore[attr-defined]
    return Generator(session, plain.config, plain.model_path, chunk_size=max_batch, runner=runner)


def test_buckets_are_powers_of_four_up_to_the_maximum() -> None:
    assert GraphBuckets(65536).sizes == [4 ** i for i in range(9)]  # 9 buckets: bounded memory
    buckets = GraphBuckets(100)
    assert buckets.sizes == [1, 4, 16, 64, 100]
    assert [buckets.bucket(n) for n in (1, 3, 64, 65, 100)] == [1, 4, 64, 100, 100]
    for bad in (0, 101):
        with pytest.raises(ValueError, match="takes 1..100 rows"):
            buckets.bucket(bad)
    with pytest.raises(ValueError, match="max_batch must be an int >= 1"):
        GraphBuckets(0)


def test_a_graph_is_never_replayed_with_other_shapes() -> None:
    buckets = GraphBuckets(64)
    shapes = ((16, 4), (16, 3), (16, 1, 12, 12))
    buckets.check_replay(16, shapes)
    buckets.check_replay(16, shapes)  # a replay with its own shapes is fine
    with pytest.raises(GraphShapeError, match="captured with shapes .* replayed with"):
        buckets.check_replay(16, ((16, 4), (16, 3), (16, 1, 10, 10)))
    buckets.check_replay(64, ((64, 4), (64, 3), (64, 1, 12, 12)))  # another bucket records its own


def test_every_graph_bucket_has_a_session_of_its_own(plain: Generator) -> None:
    """One captured graph per session: no bucket can replay scratch that another bucket reused."""
    fast = _bound(plain)
    for n in (1, 3, 7, 16, 2):
        fast.generate([0], n, rng=n)
    runner = fast._runner
    assert runner is not None
    sessions = [bucket.session for bucket in runner._bound.values()]
    assert sorted(runner._bound) == [1, 4, 16] and len({id(s) for s in sessions}) == 3
    assert all(s is not fast._session for s in sessions)  # the plain session captures nothing
    plain_runner = _bound(plain, graphs=False)._runner
    assert plain_runner is not None
    plain_runner.run(np.zeros((3, 4), np.float32), np.eye(3, dtype=np.float32))
    assert all(b.session is plain_runner._plain for b in plain_runner._bound.values())


def test_returned_arrays_are_never_overwritten_by_later_calls(plain: Generator) -> None:
    fast = _bound(plain)
    for output_type in ("np", "uint8", "device"):
        first = fast.generate([0, 1], 2, rng=0, output_type=output_type).samples  # type: ignore[arg-type]
        kept = np.array(first.numpy() if isinstance(first, DeviceSamples) else first, copy=True)
        for seed in range(1, 4):
            fast.generate([2, 1], 2, rng=seed, output_type=output_type)  # type: ignore[arg-type]
        now = first.numpy() if isinstance(first, DeviceSamples) else first
        assert np.array_equal(now, kept), output_type


def test_one_owner_thread_makes_every_run_for_eight_caller_threads(plain: Generator) -> None:
    fast = _bound(plain)
    want = {seed: plain.generate([seed % 3], 1 + seed % 5, rng=seed).samples for seed in range(32)}
    with ThreadPoolExecutor(8) as pool:
        got = dict(zip(want, pool.map(lambda s: fast.generate([s % 3], 1 + s % 5, rng=s).samples, want),
                       strict=True))
    for seed in want:
        np.testing.assert_allclose(got[seed], want[seed], atol=1e-6)
    runner = fast._runner
    assert runner is not None
    threads = set().union(*(s.threads for s in runner.opened))  # type: ignore[attr-defined]
    assert threads == {runner.owner.ident}


def test_helper_graphs_run_on_the_runners_own_gpu(plain: Generator) -> None:
    runner = BoundRunner(lambda graphs: None, None, plain.config, device="cuda", device_id=1)  # type: ignore[arg-type]
    assert runner.kernel_providers() == [(CUDA, {"device_id": "1"})]


def test_a_model_that_graphs_cannot_capture_falls_back_with_a_warning(tiny_model: Path) -> None:
    from cvae_sdk.generator import _graphs_load

    def refuses_graphs(graphs: bool) -> ort.InferenceSession:
        if graphs:  # onnxruntime's refusal when a node is not on the CUDA provider
            raise RuntimeError("This session cannot use the graph capture feature as requested by the user as "
                               "the model has control flow nodes which can't be supported by CUDA Graphs.")
        return ort.InferenceSession(str(tiny_model), providers=[CPU])

    with pytest.warns(UserWarning, match="CUDA graphs are off .*control flow"):
        assert _graphs_load(refuses_graphs, tiny_model) is False
    assert _graphs_load(lambda graphs: refuses_graphs(False), tiny_model) is True
    assert Generator.from_pretrained(tiny_model, providers=[CPU]).cuda_graphs is False


def test_bound_runs_match_plain_runs_and_record_one_shape_per_graph(plain: Generator) -> None:
    fast = _bound(plain)
    for n in (1, 3, 7, 16, 40):  # padded into buckets; 40 is split into chunks of 16
        want = plain.generate([0, 1, 2], n, rng=n)
        got = fast.generate([0, 1, 2], n, rng=n)
        np.testing.assert_allclose(got.samples, want.samples, atol=1e-6)
        assert got.labels.tolist() == want.labels.tolist()
    runner = fast._runner
    assert runner is not None
    for rows, (z, y, samples) in runner.buckets.captured.items():
        assert z == (rows, 4) and y == (rows, 3) and samples == (rows, 1, 12, 12)


@pytest.mark.parametrize("small_copy_bytes", [0, 1 << 20], ids=["take-rows kernel", "whole small bucket"])
def test_uint8_is_converted_where_the_samples_are(plain: Generator, small_copy_bytes: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "SMALL_COPY_BYTES", small_copy_bytes)  # both ways back to the host
    fast = _bound(plain)
    for output_type in ("uint8", "np"):
        got = fast.generate([0, 2], 5, rng=3, output_type=output_type).samples
        want = plain.generate([0, 2], 5, rng=3, output_type=output_type).samples
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert ("uint8" in fast._runner._kernels) == (small_copy_bytes == 0)  # type: ignore[union-attr]
    x = np.random.default_rng(0).random((64, 1, 4, 4), dtype=np.float32)
    rows = {"samples": x, "rows": np.array([5])}
    kernel = ort.InferenceSession(str(TAKE_ROWS["uint8"]), providers=[CPU]).run(None, rows)[0]
    assert np.array_equal(kernel, (x[:5] * np.float32(255) + np.float32(0.5)).astype(np.uint8))
    assert np.array_equal(ort.InferenceSession(str(TAKE_ROWS["np"]), providers=[CPU]).run(None, rows)[0], x[:5])


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
    assert cuda_options(CUDA, graphs=True) == (CUDA, {"cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0",
                                                      "enable_cuda_graph": "1"})
    assert cuda_options(CUDA, graphs=False)[1]["enable_cuda_graph"] == "0"  # type: ignore[index]
    mine = (CUDA, {"device_id": "1", "cudnn_conv_algo_search": "DEFAULT", "use_tf32": "1"})  # TF32 opted in
    assert cuda_options(mine, graphs=False) == (CUDA, {"device_id": "1", "cudnn_conv_algo_search": "DEFAULT",
                                                       "use_tf32": "1", "enable_cuda_graph": "0"})
    assert cuda_options(CPU, graphs=True) == CPU


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
    from cvae_sdk_training.kernels import KERNELS, build

    for name, data in build().items():
        assert (KERNELS / name).read_bytes() == data, f"rebuild with: python -m cvae_sdk_training.kernels ({name})"


def test_close_ends_the_owner_thread_and_later_calls_say_so(plain: Generator) -> None:
    threads = threading.active_count()
    with _bound(plain) as fast:
        want = plain.generate([0, 1], 3, rng=2).samples
        assert np.array_equal(fast.generate([0, 1], 3, rng=2).samples, want)
        assert threading.active_count() == threads + 1  # the runner's owner thread
    assert threading.active_count() == threads
    for call in (lambda: fast.generate([0], 1), lambda: fast.providers):
        with pytest.raises(RuntimeError, match="closed; open a new one"):
            call()
    fast.close()  # a second close is a no-op


def test_a_dropped_generator_ends_its_owner_thread(plain: Generator) -> None:
    import gc

    threads = threading.active_count()
    for _ in range(5):
        fast = _bound(plain)
        fast.generate([2], 4, rng=0)
        del fast
        gc.collect()
    assert threading.active_count() == threads  # nothing of a finished job keeps the runner alive
