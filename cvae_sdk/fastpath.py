"""The CUDA fast path: IO binding into fixed device buffers, one CUDA graph per batch bucket.

A request of n rows runs in the smallest bucket >= n (powers of four up to ``max_batch``), padded
with zero rows. Each bucket owns device buffers for z, y and the output, bound once, and, with
graphs on, **its own session** whose single graph (id 0) is captured on the first runs and
replayed after. One session per bucket is deliberate: a session that captured several graphs can
replay host-side scratch (e.g. the pointer table of a CUDA Concat of unequal inputs) that another
shape's run has since reused. onnxruntime does not check that a graph is replayed with the shapes
it was captured with, so :class:`GraphBuckets` does, and refuses a mismatch.

Only the rows a request asked for leave the device, once, through a small kernel graph
(``kernels/take_rows*.onnx``) that slices the bucket, optionally converts to uint8 (4x fewer
bytes), and writes into a host array that belongs to the caller. ``device`` output keeps float32
samples on the GPU as a :class:`DeviceSamples`: a buffer allocated for that call outside
onnxruntime's arena, filled by a session without graphs, so no later call can write to it.

Every session call, device allocation and copy runs on one owner thread per runner: the CUDA
execution provider keeps its graphs per thread, and a capture (global mode) fails if another
thread touches CUDA meanwhile. Callers on any thread wait for the owner.

Everything here also runs on the CPU execution provider (``device="cpu"``), which is how the
tests exercise the binding, padding, copies, threads and bookkeeping without a GPU.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort

from cvae_sdk.artifact import INPUT_Y, INPUT_Z, OUTPUT, ArtifactConfig
from cvae_sdk.checks import positive_int, to_uint8

GRAPH_ID_KEY = "gpu_graph_id"
SKIP_GRAPH = "-1"  # onnxruntime's id for "run without capture or replay"
KERNELS = Path(__file__).resolve().parent / "kernels"
TAKE_ROWS = {"np": KERNELS / "take_rows.onnx", "uint8": KERNELS / "take_rows_uint8.onnx"}
BUCKET_GROWTH = 4  # buckets 1, 4, 16, ...: at most 4x padding, and 9 buckets up to 65,536 rows
SMALL_COPY_BYTES = 256 << 10  # buckets up to this size come back whole (64 rows of 28x28 float32)
CLOSED = "this Generator is closed; open a new one with Generator.from_pretrained"  # Generator's too
SessionFactory = Callable[[bool], ort.InferenceSession]  # graphs on? -> a session for the decoder
T = TypeVar("T")


class GraphShapeError(RuntimeError):
    """A CUDA graph was about to be replayed with shapes other than the ones it was captured with."""


@dataclass
class GraphBuckets:
    """Batch buckets (powers of four up to ``max_batch``) and the shapes each graph was captured with."""

    max_batch: int
    captured: dict[int, tuple[tuple[int, ...], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive_int(self.max_batch, "max_batch")

    @property
    def sizes(self) -> list[int]:
        sizes, size = [], 1
        while size < self.max_batch:
            sizes.append(size)
            size *= BUCKET_GROWTH
        return [*sizes, self.max_batch]

    def bucket(self, n: int) -> int:
        """The smallest bucket that holds n rows."""
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"a bucketed run takes 1..{self.max_batch} rows, got {n}")
        return next(size for size in self.sizes if size >= n)

    def check_replay(self, bucket: int, shapes: tuple[tuple[int, ...], ...]) -> None:
        """Record the shapes of a bucket graph's first run; refuse any later run with other shapes."""
        seen = self.captured.setdefault(bucket, shapes)
        if seen != shapes:
            raise GraphShapeError(f"the CUDA graph of bucket {bucket} was captured with shapes {seen} and would "
                                  f"be replayed with {shapes}; a replay reuses the captured buffers, so this is "
                                  "refused")


class DeviceSamples:
    """Samples left in device memory; exchange them through DLPack (``torch.from_dlpack(samples)``).

    Valid for as long as this object, or a DLPack consumer of it, is alive: the buffer was allocated
    for this call alone, outside onnxruntime's arena, and no later ``generate`` writes to it.
    """

    def __init__(self, value: ort.OrtValue) -> None:
        self._value = value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._value.shape())

    @property
    def device(self) -> str:
        return str(self._value.device_name())

    @property
    def data_ptr(self) -> int:
        """The device address of the first sample (a DLPack consumer sees the same one: no copy)."""
        return int(self._value.data_ptr())

    def numpy(self) -> np.ndarray:
        """A copy in host memory."""
        return np.array(self._value.numpy(), copy=True)

    def __dlpack__(self, *, stream: Any = None) -> Any:
        return self._value.__dlpack__(stream=stream)

    def __dlpack_device__(self) -> tuple[int, int]:
        device: tuple[int, int] = self._value.__dlpack_device__()
        return device

    def __len__(self) -> int:
        return self.shape[0]


class _OwnerThread:
    """Runs every job of one runner on a single daemon thread, in order; callers wait for results.

    The thread holds no reference to its runner between jobs, so a discarded runner is collected,
    and its finaliser stops the thread (:meth:`stop`).
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._lock = threading.Lock()
        self._stopped = False

    def call(self, job: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return job()
        future: Future[T] = Future()
        with self._lock:
            if self._stopped:
                raise RuntimeError(CLOSED)
            if not self._thread.is_alive():
                self._thread.start()
            self._jobs.put((future, job))
        return future.result()

    def stop(self) -> None:
        """End the thread after the jobs already queued; later calls raise."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            started = self._thread.is_alive()
            self._jobs.put(None)
        if started and threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            try:
                future.set_result(job())
            except BaseException as err:  # handed to the waiting caller
                future.set_exception(err)
            del item, future, job  # nothing of the last job (and its runner) stays reachable from here


class _Bucket:
    """The fixed input/output buffers of one bucket and its session, bound once."""

    def __init__(self, runner: BoundRunner, rows: int, session: ort.InferenceSession) -> None:
        c = runner.config
        self.rows, self.session = rows, session
        self.z = runner.allocate((rows, c.latent_dim), np.float32)
        self.y = runner.allocate((rows, c.num_classes), np.float32)
        self.samples = runner.allocate((rows, *c.sample_shape), np.float32)
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(INPUT_Z, self.z)
        self.binding.bind_ortvalue_input(INPUT_Y, self.y)
        self.binding.bind_ortvalue_output(OUTPUT, self.samples)

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(v.shape()) for v in (self.z, self.y, self.samples))


class BoundRunner:
    """Runs a decoder through IO binding on one owner thread; with ``graphs``, a session and CUDA graph per bucket.

    ``open_session(graphs)`` opens the decoder on this runner's device; ``plain`` is an open
    session without graphs (device output, and every bucket when graphs are off).
    """

    def __init__(self, open_session: SessionFactory, plain: ort.InferenceSession, config: ArtifactConfig, *,
                 device: str = "cuda", device_id: int = 0, graphs: bool = True, max_batch: int = 4096) -> None:
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
        self.config, self.device, self.device_id, self.graphs = config, device, device_id, graphs
        self._open, self._plain = open_session, plain
        self.buckets = GraphBuckets(max_batch)
        self._bound: dict[int, _Bucket] = {}
        self._kernels: dict[str, ort.InferenceSession] = {}
        self._row_bytes = 4 * int(np.prod(config.sample_shape))
        self.owner = _OwnerThread(f"cvae-sdk-{device}{device_id}")
        weakref.finalize(self, self.owner.stop)  # a runner dropped without close() ends its thread too

    def close(self) -> None:
        """Release the sessions and device buffers (on the thread that made them) and end the owner thread."""
        def release() -> None:
            self._bound.clear()
            self._kernels.clear()
            self._plain = None

        try:
            self.owner.call(release)
        except RuntimeError:  # already closed
            return
        self.owner.stop()

    def allocate(self, shape: tuple[int, ...], dtype: Any) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, self.device, self.device_id)

    def kernel_providers(self) -> list[Any]:
        """The helper graphs run on this runner's device, the same GPU as the samples."""
        if self.device == "cuda":
            return [("CUDAExecutionProvider", {"device_id": str(self.device_id)})]
        return ["CPUExecutionProvider"]

    def run(self, z: np.ndarray, y: np.ndarray, output: str = "np") -> np.ndarray:
        """z (n, D), y (n, K) float32 on the host -> a new host array (n, C, H, W), float32 or uint8."""
        n = z.shape[0]
        rows = self.buckets.bucket(n)
        z_rows, y_rows = _padded(z, rows), _padded(y, rows)
        return self.owner.call(lambda: self._run(n, rows, z_rows, y_rows, output))

    def _run(self, n: int, rows: int, z: np.ndarray, y: np.ndarray, output: str) -> np.ndarray:
        bucket = self._bound.get(rows) or self._bound.setdefault(
            rows, _Bucket(self, rows, self._open(True) if self.graphs else self._plain))
        bucket.z.update_inplace(z)
        bucket.y.update_inplace(y)
        options = ort.RunOptions()
        if self.graphs:
            self.buckets.check_replay(rows, bucket.shapes())
            options.add_run_config_entry(GRAPH_ID_KEY, "0")
        bucket.session.run_with_iobinding(bucket.binding, options)
        return self._take_rows(bucket, n, output)

    def _take_rows(self, bucket: _Bucket, n: int, output: str) -> np.ndarray:
        """Copy rows [0, n) of the bucket's samples into a fresh host array, converted on the device.

        A small bucket comes back whole in one copy and is sliced and converted on the host: on an
        H200 that copy took 10 µs against 30 µs (float32) and 43 µs (uint8) for the kernel's run.
        """
        if bucket.rows * self._row_bytes <= SMALL_COPY_BYTES:
            whole = bucket.samples.numpy()  # a host copy on CUDA; on the CPU device, the buffer itself
            rows = whole[:n] if self.device == "cuda" else np.array(whole[:n], copy=True)
            return to_uint8(rows) if output == "uint8" else rows
        kernel = self._kernels.get(output)
        if kernel is None:
            kernel = self._kernels.setdefault(output, ort.InferenceSession(
                str(TAKE_ROWS[output]), providers=self.kernel_providers()))
        host = np.empty((n, *self.config.sample_shape), dtype=np.uint8 if output == "uint8" else np.float32)
        binding = kernel.io_binding()
        binding.bind_ortvalue_input("samples", bucket.samples)
        binding.bind_cpu_input("rows", np.array([n], dtype=np.int64))
        binding.bind_ortvalue_output("pixels", ort.OrtValue.ortvalue_from_numpy(host))
        kernel.run_with_iobinding(binding)
        return host

    def run_on_device(self, z: np.ndarray, y: np.ndarray) -> DeviceSamples:
        """Exactly n rows, no graph, into a device buffer allocated for this call and handed to the caller."""
        z, y = np.ascontiguousarray(z, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32)

        def job() -> DeviceSamples:
            samples = self.allocate((z.shape[0], *self.config.sample_shape), np.float32)
            binding = self._plain.io_binding()
            binding.bind_ortvalue_input(INPUT_Z, ort.OrtValue.ortvalue_from_numpy(z, self.device, self.device_id))
            binding.bind_ortvalue_input(INPUT_Y, ort.OrtValue.ortvalue_from_numpy(y, self.device, self.device_id))
            binding.bind_ortvalue_output(OUTPUT, samples)
            self._plain.run_with_iobinding(binding)
            return DeviceSamples(samples)

        return self.owner.call(job)


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    if array.shape[0] == rows:
        return np.ascontiguousarray(array, dtype=np.float32)
    padded = np.zeros((rows, *array.shape[1:]), dtype=np.float32)
    padded[:array.shape[0]] = array
    return padded
