"""The CUDA fast path: IO binding into fixed device buffers, one CUDA graph per batch bucket.

A request of n rows runs in the smallest power-of-two bucket >= n, padded with zero rows. Each
bucket owns device buffers for z, y and the output, bound once, and its own CUDA graph id
(onnxruntime's ``gpu_graph_id`` run option): the first runs capture the graph, later runs replay
it. onnxruntime does not check that a graph id is replayed with the shapes it was captured with,
so :class:`GraphBuckets` does, and refuses a mismatch instead of returning wrong pixels.

Two optional tails cut device-to-host bytes: ``uint8`` output converts on the device (4x fewer
bytes), and ``device`` output keeps the float32 samples on the GPU as a :class:`DeviceSamples`
that torch or CuPy take through DLPack without a copy. Device output skips the graphs: each
call gets its own freshly allocated buffer, which the caller owns.

Everything here also runs on the CPU execution provider (``device="cpu"``, graphs off), which is
how the tests exercise the binding, padding and bookkeeping on machines without a GPU.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cvae_sdk.artifact import INPUT_Y, INPUT_Z, OUTPUT, ArtifactConfig

GRAPH_ID_KEY = "gpu_graph_id"
SKIP_GRAPH = "-1"  # onnxruntime's id for "run without capture or replay"
TO_UINT8 = Path(__file__).resolve().parent / "kernels" / "to_uint8.onnx"


class GraphShapeError(RuntimeError):
    """A CUDA graph id was about to be replayed with shapes other than the ones it was captured with."""


@dataclass
class GraphBuckets:
    """Batch buckets (powers of two up to ``max_batch``), their graph ids and their captured shapes."""

    max_batch: int
    captured: dict[int, tuple[tuple[int, ...], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ValueError(f"max_batch must be a positive int, got {self.max_batch!r}")

    @property
    def sizes(self) -> list[int]:
        sizes = [1 << i for i in range(self.max_batch.bit_length()) if 1 << i < self.max_batch]
        return [*sizes, self.max_batch]

    def bucket(self, n: int) -> int:
        """The smallest bucket that holds n rows."""
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"a bucketed run takes 1..{self.max_batch} rows, got {n}")
        return next(size for size in self.sizes if size >= n)

    def graph_id(self, bucket: int) -> int:
        """Bucket sizes map to graph ids 0, 1, 2, ... in increasing order."""
        if bucket not in self.sizes:
            raise ValueError(f"{bucket} is not a bucket; buckets are {self.sizes}")
        return self.sizes.index(bucket)

    def check_replay(self, graph_id: int, shapes: tuple[tuple[int, ...], ...]) -> None:
        """Record the shapes of a graph's first run; refuse any later run with other shapes."""
        seen = self.captured.setdefault(graph_id, shapes)
        if seen != shapes:
            raise GraphShapeError(f"CUDA graph {graph_id} was captured with shapes {seen} and would be replayed "
                                  f"with {shapes}; a replay reuses the captured buffers, so this is refused")


class DeviceSamples:
    """Samples left in device memory; exchange them through DLPack (``torch.from_dlpack(samples)``).

    The buffer belongs to this object: keep it alive while a consumer uses the memory.
    """

    def __init__(self, value: ort.OrtValue) -> None:
        self._value = value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._value.shape())

    @property
    def device(self) -> str:
        return str(self._value.device_name())

    def numpy(self) -> np.ndarray:
        """Copy to host memory."""
        array: np.ndarray = self._value.numpy()
        return array

    def __dlpack__(self, *, stream: Any = None) -> Any:
        return self._value.__dlpack__(stream=stream)

    def __dlpack_device__(self) -> tuple[int, int]:
        device: tuple[int, int] = self._value.__dlpack_device__()
        return device

    def __len__(self) -> int:
        return self.shape[0]


class _Bucket:
    """Fixed input/output buffers of one bucket, bound once to an IO binding."""

    def __init__(self, runner: BoundRunner, rows: int) -> None:
        c = runner.config
        self.rows = rows
        self.z = runner.allocate((rows, c.latent_dim), np.float32)
        self.y = runner.allocate((rows, c.num_classes), np.float32)
        self.samples = runner.allocate((rows, *c.sample_shape), np.float32)
        self.binding = runner.session.io_binding()
        self.binding.bind_ortvalue_input(INPUT_Z, self.z)
        self.binding.bind_ortvalue_input(INPUT_Y, self.y)
        self.binding.bind_ortvalue_output(OUTPUT, self.samples)
        self.pixels: ort.OrtValue | None = None
        self.to_uint8: Any = None

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(v.shape()) for v in (self.z, self.y, self.samples))


class BoundRunner:
    """Runs a decoder session through IO binding; with ``graphs=True``, one CUDA graph per bucket.

    Thread-safe: a lock serialises runs, since a captured graph must not run concurrently.
    """

    def __init__(self, session: ort.InferenceSession, config: ArtifactConfig, *, device: str = "cuda",
                 device_id: int = 0, graphs: bool = True, max_batch: int = 4096) -> None:
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
        self.session, self.config, self.device, self.device_id = session, config, device, device_id
        self.graphs = graphs
        self.buckets = GraphBuckets(max_batch)
        self._bound: dict[int, _Bucket] = {}
        self._post: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    def allocate(self, shape: tuple[int, ...], dtype: Any) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, self.device, self.device_id)

    def run(self, z: np.ndarray, y: np.ndarray, output: str = "np") -> np.ndarray:
        """z (n, D), y (n, K) float32 on the host -> samples (n, C, H, W) on the host, float32 or uint8."""
        n = z.shape[0]
        rows = self.buckets.bucket(n)
        with self._lock:
            bucket = self._bound.get(rows) or self._bound.setdefault(rows, _Bucket(self, rows))
            bucket.z.update_inplace(_padded(z, rows))
            bucket.y.update_inplace(_padded(y, rows))
            self.session.run_with_iobinding(bucket.binding, self._run_options(rows, bucket.shapes()))
            if output == "uint8":
                return self._convert_uint8(bucket)[:n].copy()
            host: np.ndarray = bucket.samples.numpy()[:n]
            return host

    def run_on_device(self, z: np.ndarray, y: np.ndarray) -> DeviceSamples:
        """Exactly n rows, no graph, into a fresh device buffer handed to the caller."""
        binding = self.session.io_binding()
        z_value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(z), self.device, self.device_id)
        y_value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(y), self.device, self.device_id)
        binding.bind_ortvalue_input(INPUT_Z, z_value)
        binding.bind_ortvalue_input(INPUT_Y, y_value)
        binding.bind_output(OUTPUT, self.device, self.device_id)
        options = ort.RunOptions()
        options.add_run_config_entry(GRAPH_ID_KEY, SKIP_GRAPH)
        with self._lock:
            self.session.run_with_iobinding(binding, options)
        return DeviceSamples(binding.get_outputs()[0])

    def _run_options(self, rows: int, shapes: tuple[tuple[int, ...], ...]) -> ort.RunOptions:
        options = ort.RunOptions()
        if self.graphs:
            graph_id = self.buckets.graph_id(rows)
            self.buckets.check_replay(graph_id, shapes)
            options.add_run_config_entry(GRAPH_ID_KEY, str(graph_id))
        else:
            options.add_run_config_entry(GRAPH_ID_KEY, SKIP_GRAPH)
        return options

    def _convert_uint8(self, bucket: _Bucket) -> np.ndarray:
        """round(samples * 255) on the device, then copy a quarter of the bytes to the host."""
        if self._post is None:
            self._post = ort.InferenceSession(str(TO_UINT8), providers=self.session.get_providers())
        if bucket.pixels is None:
            bucket.pixels = self.allocate((bucket.rows, *self.config.sample_shape), np.uint8)
            bucket.to_uint8 = self._post.io_binding()
            bucket.to_uint8.bind_ortvalue_input("samples", bucket.samples)
            bucket.to_uint8.bind_ortvalue_output("pixels", bucket.pixels)
        options = ort.RunOptions()
        options.add_run_config_entry(GRAPH_ID_KEY, SKIP_GRAPH)
        self._post.run_with_iobinding(bucket.to_uint8, options)
        pixels: np.ndarray = bucket.pixels.numpy()
        return pixels


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    if array.shape[0] == rows:
        return np.ascontiguousarray(array, dtype=np.float32)
    padded = np.zeros((rows, *array.shape[1:]), dtype=np.float32)
    padded[:array.shape[0]] = array
    return padded
