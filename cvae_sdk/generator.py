"""``Generator``: label-conditioned sampling from a cvae-sdk ONNX artifact with onnxruntime.

>>> from cvae_sdk import Generator
>>> gen = Generator.from_pretrained()
>>> out = gen.generate([3, 7], num_samples_per_label=4, rng=0)
>>> out.samples.shape, out.labels.tolist()
((8, 1, 28, 28), [3, 3, 3, 3, 7, 7, 7, 7])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, overload

import numpy as np
import onnxruntime as ort

from cvae_sdk.artifact import INPUT_Y, INPUT_Z, OUTPUT, ArtifactConfig, ArtifactError, parse_metadata, variant_path
from cvae_sdk.batcher import MicroBatcher
from cvae_sdk.checks import positive_int, to_uint8
from cvae_sdk.fastpath import CLOSED, BoundRunner, DeviceSamples
from cvae_sdk.labels import LabelInput, parse_labels, request_labels, samples_per_label
from cvae_sdk.latents import prior_latents, request_key
from cvae_sdk.providers import (
    CPU,
    CUDA,
    ProviderSpec,
    check_loaded,
    cuda_options,
    provider_name,
    requested_providers,
)
from cvae_sdk.request import (
    GenerationOutput,
    OutputType,
    check_output_type,
    check_request,
    package,
    resolve_temperature,
)
from cvae_sdk.validate import graph_problems

# Rows per session run for large requests. On CPU, 256 rows keep a layer's activations in the caches: the
# shipped int8 variant ran 1.12x as fast as in 1,024-row runs at 4,096 samples, float32 within a few
# hundredths of its best chunk (benchmarks/results/chunk_size.json); a GPU takes larger ones. The prior
# is drawn PRIOR_ROWS at a time (rounded up to whole chunks), where its per-call cost is spread thin
# (the same samples whatever the split: draws are keyed by row).
CPU_CHUNK, GPU_CHUNK, PRIOR_ROWS = 256, 65536, 4096
SHIPPED_MODEL = "mnist-cvae.onnx"  # shipped beside it: its int8 variant, mnist-cvae.int8.onnx
Variant = Literal["int8", "fp16"]  # what `export --int8` / `--fp16` writes beside an artifact
VARIANTS: tuple[str, ...] = get_args(Variant)


HostOutput = Literal["np", "uint8"]


def shipped_file(name: str) -> Path | None:
    """A file of ``exported/``: package data in a wheel, the folder itself in a source checkout."""
    for candidate in (Path(str(resources.files("cvae_sdk") / "exported" / name)),
                      Path(__file__).resolve().parent.parent / "exported" / name):
        if candidate.is_file():
            return candidate
    return None


def shipped_model_path() -> Path:
    """The default MNIST model."""
    path = shipped_file(SHIPPED_MODEL)
    if path is None:
        raise ValueError(f"the shipped model {SHIPPED_MODEL} is missing from this installation; "
                         "reinstall cvae-sdk or pass a model path")
    return path


def model_file(path: str | Path | None = None, variant: Variant | None = None) -> Path:
    """The artifact to load: ``path`` (default: the shipped model), or the ``variant`` of it that
    ``cvae-sdk export --int8`` / ``--fp16`` wrote beside it (``model.onnx`` -> ``model.int8.onnx``)."""
    base = shipped_model_path() if path is None else Path(path)
    if variant is None:
        if not base.is_file():
            raise ValueError(f"model file {str(base)!r} does not exist")
        return base
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)} (or none for float32), got {variant!r}")
    target = variant_path(base, variant)
    if not target.is_file():
        fix = ("the shipped model comes with an int8 variant only" if path is None else
               f"write it with `cvae-sdk export RUN --out {base} --{variant}`")
        raise ValueError(f"no {variant} variant of {base.name}: {target} does not exist ({fix})")
    return target


class Generator:
    """Samples images for chosen labels. Safe to share between threads.

    ``close()`` (or ``with Generator.from_pretrained(...) as gen:``) releases its onnxruntime
    sessions, GPU buffers and CUDA owner thread at once; a Generator that is dropped releases them
    when it is collected.
    """

    def __init__(self, session: ort.InferenceSession, config: ArtifactConfig, model_path: Path,
                 chunk_size: int = CPU_CHUNK, runner: BoundRunner | None = None) -> None:
        positive_int(chunk_size, "chunk_size")
        self._session, self._config, self._model_path = session, config, model_path
        self._chunk = int(chunk_size)
        self._prior_block = self._chunk * -(-PRIOR_ROWS // self._chunk)  # whole chunks, at least PRIOR_ROWS rows
        self._eye = np.eye(config.num_classes, dtype=np.float32)
        self._outputs = [OUTPUT]
        self._runner = runner  # the IO-bound CUDA path, when the session runs on CUDA

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, variant: Variant | None = None,
                        providers: str | Sequence[ProviderSpec] = "auto", threads: int | None = None,
                        chunk_size: int | None = None, cuda_graphs: bool = True) -> Generator:
        """Load an artifact (default: the shipped MNIST model) into an onnxruntime session.

        ``variant="int8"`` loads the int8 file beside it instead (the shipped model has one: faster
        than float32 at every batch size, about 3x from batch 256; ``cvae-sdk bench`` measures both).

        ``providers`` is ``"auto"`` (CUDA only if it really loads, else CPU) or an explicit
        list; a requested provider that did not load raises ``ProviderUnavailableError``.
        ``chunk_size`` bounds the rows of one session run (default 256 on CPU, 65,536 on GPU).
        On CUDA, runs go through IO binding with one CUDA graph per batch bucket (``cuda_graphs``).
        """
        model_path = model_file(path, variant)
        if threads is not None:
            positive_int(threads, "threads")
        requested = requested_providers(providers, ort.get_available_providers())
        if any(provider_name(p) != CPU for p in requested) and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads

        def open_session(graphs: bool) -> ort.InferenceSession:
            specs = [cuda_options(spec, graphs=graphs) for spec in requested]
            return ort.InferenceSession(str(model_path), options, providers=specs)

        try:
            session = open_session(False)  # the plain session; CUDA graphs get sessions of their own
        except Exception as err:  # onnxruntime raises its own types for unreadable graphs
            raise ArtifactError(f"{model_path} is not a loadable ONNX model ({err})") from err
        check_loaded(requested, session.get_providers(), auto=providers == "auto")
        config = parse_metadata(session.get_modelmeta().custom_metadata_map, str(model_path))
        problems = graph_problems(session, config)
        if problems:
            raise ArtifactError(f"{model_path}: " + "; ".join(problems))
        on_cuda = session.get_providers()[0] == CUDA
        if chunk_size is None:
            chunk_size = GPU_CHUNK if on_cuda else CPU_CHUNK
        runner = None
        if on_cuda:
            device_id = int(session.get_provider_options().get(CUDA, {}).get("device_id", 0))
            graphs = cuda_graphs and _graphs_load(open_session, model_path)
            runner = BoundRunner(open_session, session, config, device="cuda", device_id=device_id,
                                 graphs=graphs, max_batch=chunk_size)
        return cls(session, config, model_path, chunk_size, runner)

    def close(self) -> None:
        """Release the sessions, device buffers and owner thread; later calls raise ``RuntimeError``."""
        if self._runner is not None:
            self._runner.close()
        self._runner, self._session = None, None

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_session(self) -> ort.InferenceSession:
        if self._session is None:
            raise RuntimeError(CLOSED)
        return self._session

    @property
    def config(self) -> ArtifactConfig:
        return self._config

    @property
    def model_path(self) -> Path:
        return self._model_path

    @property
    def cuda_graphs(self) -> bool:
        """Whether runs replay captured CUDA graphs (False on CPU, or where the model cannot be captured)."""
        return self._runner is not None and self._runner.graphs

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return list(self._open_session().get_providers())

    @overload
    def generate(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                 temperature: float | None = None, latents: np.ndarray | None = None,
                 output_type: HostOutput = "np") -> GenerationOutput[np.ndarray]: ...
    @overload
    def generate(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                 temperature: float | None = None, latents: np.ndarray | None = None,
                 output_type: Literal["pil"]) -> GenerationOutput[list[Any]]: ...
    @overload
    def generate(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                 temperature: float | None = None, latents: np.ndarray | None = None,
                 output_type: Literal["device"]) -> GenerationOutput[DeviceSamples]: ...
    @overload
    def generate(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                 temperature: float | None = None, latents: np.ndarray | None = None,
                 output_type: OutputType = "np") -> GenerationOutput[Any]: ...
    def generate(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                 temperature: float | None = None, latents: np.ndarray | None = None,
                 output_type: OutputType = "np") -> GenerationOutput[Any]:
        """Draw ``num_samples_per_label`` samples for each label, grouped by label in order.

        The same ``rng`` gives bit-identical samples whatever the chunk size or thread.
        ``temperature`` scales the prior's spread (default: the artifact's per-class
        ``class_temperatures`` when export calibrated them, else its ``default_temperature``).
        ``latents`` (N, latent_dim) replaces the prior draw, so it cannot be combined with ``rng``
        or ``temperature`` (a ``ValueError`` says so).
        """
        ids, z = self._prepare(labels, num_samples_per_label, rng=rng, temperature=temperature,
                               latents=latents, output_type=output_type)
        return package(self._render(z, ids, output_type), ids, z, output_type)

    def _prepare(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                 temperature: float | None = None, latents: np.ndarray | None = None,
                 output_type: str = "np") -> tuple[np.ndarray, np.ndarray]:
        """Validate a request and draw its latents: class ids (N,) and z (N, latent_dim) float32."""
        if latents is not None:
            if rng is not None or temperature is not None:
                raise ValueError("latents= gives z directly, so rng and temperature would not be used; pass "
                                 "latents alone, or rng/temperature without latents")
            ids = request_labels(labels, num_samples_per_label, self._config.class_names)
            check_output_type(output_type)
            return ids, self._check_latents(latents, ids.shape[0])
        request = check_request(self._config, labels, num_samples_per_label, rng=rng, temperature=temperature,
                                output_type=output_type)
        ids, key, temp = request.labels, request.key, request.temperature
        rows = self._prior_block
        if ids.shape[0] <= rows:
            return ids, prior_latents(self._config.prior, ids, key, 0, temp)
        z = np.empty((ids.shape[0], self._config.latent_dim), dtype=np.float32)
        for lo in range(0, ids.shape[0], rows):  # bounded temporaries for huge requests
            z[lo:lo + rows] = prior_latents(self._config.prior, ids[lo:lo + rows], key, lo, temp)
        return ids, z

    def _render(self, z: np.ndarray, ids: np.ndarray, output_type: str = "np") -> Any:
        """Decode z (N, D) for class ids (N,) chunk by chunk into one (N, C, H, W) array.

        ``output_type="device"`` returns a :class:`DeviceSamples` in GPU memory instead.
        """
        n = ids.shape[0]
        if n <= self._chunk or output_type == "device":
            return self._decode(z, self._eye[ids], output_type)
        dtype = np.uint8 if output_type == "uint8" else np.float32
        samples = np.empty((n, *self._config.sample_shape), dtype=dtype)
        for lo in range(0, n, self._chunk):
            hi = min(n, lo + self._chunk)
            samples[lo:hi] = self._decode(z[lo:hi], self._eye[ids[lo:hi]], output_type)
        return samples

    def _decode(self, z: np.ndarray, y: np.ndarray, output_type: str) -> Any:
        """At most one chunk: float32, uint8 converted where the samples are, or left on the GPU."""
        if output_type == "device":
            return self._decode_on_device(z, y)
        if self._runner is not None:
            return self._runner.run(z, y, "uint8" if output_type == "uint8" else "np")
        samples = self._run_graph(z, y)
        return to_uint8(samples) if output_type == "uint8" else samples

    def _decode_on_device(self, z: np.ndarray, y: np.ndarray) -> DeviceSamples:
        if self._runner is None:
            raise ValueError(f"output_type='device' keeps samples in GPU memory and needs the CUDA execution "
                             f"provider; this Generator runs on {self.providers}. Use 'np' or 'uint8'")
        if z.shape[0] > self._chunk:
            raise ValueError(f"output_type='device' takes at most chunk_size={self._chunk} samples per call, got "
                             f"{z.shape[0]}; stream larger requests with iter_chunks(..., output_type='device')")
        return self._runner.run_on_device(z, y)

    def batcher(self, max_batch: int = 256, max_delay_ms: float = 2.0,
                on_batch: Callable[[int], None] | None = None, max_gap_ms: float = 0.2,
                on_died: Callable[[BaseException], None] | None = None) -> MicroBatcher:
        """A micro-batcher that coalesces concurrent small requests into shared session runs.

        A run starts when ``max_batch`` samples are queued, ``max_delay_ms`` after its first
        request, or once no request has arrived for ``max_gap_ms``, whichever comes first.
        ``on_batch``, if given, is called with the size of every shared run (for metrics);
        ``on_died`` with the error if the batcher's worker thread ever stops on one.
        """
        return MicroBatcher(self, max_batch=max_batch, max_delay_ms=max_delay_ms, on_batch=on_batch,
                            max_gap_ms=max_gap_ms, on_died=on_died)

    @overload
    def iter_chunks(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                    temperature: float | None = None, output_type: HostOutput = "np",
                    start: int = 0, stop: int | None = None) -> Iterator[GenerationOutput[np.ndarray]]: ...
    @overload
    def iter_chunks(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                    temperature: float | None = None, output_type: Literal["pil"],
                    start: int = 0, stop: int | None = None) -> Iterator[GenerationOutput[list[Any]]]: ...
    @overload
    def iter_chunks(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                    temperature: float | None = None, output_type: Literal["device"],
                    start: int = 0, stop: int | None = None) -> Iterator[GenerationOutput[DeviceSamples]]: ...
    @overload
    def iter_chunks(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                    temperature: float | None = None, output_type: OutputType = "np",
                    start: int = 0, stop: int | None = None) -> Iterator[GenerationOutput[Any]]: ...
    def iter_chunks(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
                    temperature: float | None = None, output_type: OutputType = "np",
                    start: int = 0, stop: int | None = None) -> Iterator[GenerationOutput[Any]]:
        """Yield samples [start, stop) of a request chunk by chunk, in bounded memory.

        Sample i equals ``generate(...).samples[i]`` for the same arguments, so shards of one
        request (``start``/``stop``) concatenate to the whole, bit for bit.
        """
        each = parse_labels(labels, self._config.class_names)                           # (L,) one per label
        per_label = samples_per_label(num_samples_per_label)
        total = each.shape[0] * per_label
        stop = total if stop is None else stop
        if not 0 <= start <= stop <= total:
            raise ValueError(f"start/stop must satisfy 0 <= start <= stop <= {total}, got {start}/{stop}")
        temp, key = resolve_temperature(self._config, temperature), request_key(rng)
        check_output_type(output_type)  # every check runs before the first chunk is asked for
        return self._chunks(each, per_label, key, temp, output_type, start, stop)

    def _chunks(self, each: np.ndarray, per_label: int, key: np.ndarray, temp: float | np.ndarray,
                output_type: str, start: int, stop: int) -> Iterator[GenerationOutput[Any]]:
        block = self._prior_block  # the prior's rows drawn at once, yielded a chunk at a time
        for first in range(start, stop, block):  # memory bounded whatever the total
            last = min(stop, first + block)
            block_ids = each[np.arange(first, last) // per_label]                        # (last - first,)
            block_z = prior_latents(self._config.prior, block_ids, key, first, temp)       # (last - first, D)
            for lo in range(first, last, self._chunk):
                hi = min(last, lo + self._chunk)
                ids, z = block_ids[lo - first:hi - first], block_z[lo - first:hi - first]
                yield package(self._render(z, ids, output_type), ids, z, output_type, lo)

    @overload
    def interpolate(self, start_label: int | str, end_label: int | str, steps: int = 8, *,
                    rng: Any = None, temperature: float | None = None, latents: np.ndarray | None = None,
                    output_type: HostOutput = "np") -> GenerationOutput[np.ndarray]: ...
    @overload
    def interpolate(self, start_label: int | str, end_label: int | str, steps: int = 8, *,
                    rng: Any = None, temperature: float | None = None, latents: np.ndarray | None = None,
                    output_type: Literal["pil"]) -> GenerationOutput[list[Any]]: ...
    @overload
    def interpolate(self, start_label: int | str, end_label: int | str, steps: int = 8, *,
                    rng: Any = None, temperature: float | None = None, latents: np.ndarray | None = None,
                    output_type: Literal["device"]) -> GenerationOutput[DeviceSamples]: ...
    @overload
    def interpolate(self, start_label: int | str, end_label: int | str, steps: int = 8, *,
                    rng: Any = None, temperature: float | None = None,
                    latents: np.ndarray | None = None, output_type: OutputType = "np") -> GenerationOutput[Any]: ...
    def interpolate(self, start_label: int | str, end_label: int | str, steps: int = 8, *,
                    rng: Any = None, temperature: float | None = None,
                    latents: np.ndarray | None = None, output_type: OutputType = "np") -> GenerationOutput[Any]:
        """Morph ``start_label`` into ``end_label`` in ``steps`` images.

        z moves linearly between a prior draw for each end that share one noise vector (or
        between ``latents[0]`` and ``latents[1]`` when given), and the class weights move from
        one label to the other. Reported labels switch at the midpoint.
        """
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
            raise ValueError(f"steps must be an int >= 2, got {steps!r}")
        ends = parse_labels([start_label, end_label], self._config.class_names)
        if latents is not None and (rng is not None or temperature is not None):
            raise ValueError("latents= gives the two end codes directly, so rng and temperature would not be "
                             "used; pass latents alone, or rng/temperature without latents")
        if latents is None:
            key, temp = request_key(rng), resolve_temperature(self._config, temperature)
            pair = np.stack([prior_latents(self._config.prior, ends[i:i + 1], key, 0, temp)[0]
                             for i in range(2)])
        else:
            pair = self._check_latents(latents, 2)
        t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]  # (S, 1)
        z = ((1 - t) * pair[0] + t * pair[1]).astype(np.float32)           # (S, D)
        y = (1 - t) * self._eye[ends[0]] + t * self._eye[ends[1]]          # (S, K)
        check_output_type(output_type)
        labels = np.where(t[:, 0] < 0.5, ends[0], ends[1]).astype(np.int64)
        return package(self._decode(z, y.astype(np.float32), output_type), labels, z, output_type)

    def _run_graph(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Run the graph: z (N, D) float32 and class weights y (N, K) float32 -> (N, C, H, W)."""
        if self._runner is not None:  # a CUDA-graph session runs only through its bound buffers
            return self._runner.run(z, y)  # at most chunk_size rows
        result: np.ndarray = self._open_session().run(self._outputs, {INPUT_Z: z, INPUT_Y: y})[0]
        return result

    # --- helpers ---------------------------------------------------------------------------------
    def _check_latents(self, latents: np.ndarray, n: int) -> np.ndarray:
        array = np.asarray(latents)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"latents must be a float array, got dtype {array.dtype}")
        if array.shape != (n, self._config.latent_dim):
            raise ValueError(f"latents must have shape {(n, self._config.latent_dim)} "
                             f"(samples, latent_dim), got {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("latents contain NaN or inf; pass finite values")
        return np.ascontiguousarray(array, dtype=np.float32)

    def __repr__(self) -> str:
        c = self._config
        return (f"Generator({str(self._model_path)!r}, classes={c.num_classes}, latent_dim={c.latent_dim}, "
                f"sample_shape={c.sample_shape}, providers={self.providers})")


def _graphs_load(open_session: Callable[[bool], Any], model_path: Path) -> bool:
    """Whether the model opens with CUDA graphs on; onnxruntime refuses if any node is not on CUDA."""
    try:
        open_session(True)
    except Exception as err:
        warnings.warn(f"{model_path}: CUDA graphs are off ({err}); every node must run on the CUDA provider "
                      "for capture. Runs go through IO binding without graphs", stacklevel=3)
        return False
    return True


