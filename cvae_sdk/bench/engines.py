"""The engines a bench times, each in its own subprocess: the SDK, OpenVINO, and torch (from the
training backend), doing the same work on the same weights."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk.bench.timing import peak_rss_mb, time_calls
from cvae_sdk.request import OutputType

CPU_ENGINES = ("torch-eager", "torch-compile", "openvino", "openvino-int8", "sdk-fp32", "sdk-int8")
INT8_ENGINES = ("sdk-int8", "openvino-int8")  # engines that run the int8 artifact
CUDA_ENGINES = ("torch-cuda", "torch-cuda-device", "torch-cuda-graphs", "torch-cuda-graphs-device", "sdk-cuda",
                "sdk-cuda-uint8", "sdk-cuda-device", "sdk-cuda-fp16")
CUDA_PROVIDER = ("CUDAExecutionProvider", {"use_tf32": "0"})  # TF32 off: float32 against torch's float32
SDK_OUTPUT: dict[str, OutputType] = {"sdk-cuda": "np", "sdk-cuda-uint8": "uint8", "sdk-cuda-device": "device",
                                     "sdk-cuda-fp16": "device"}
Engine = tuple[Callable[[int], Callable[[], object]], list[str]]  # (batch -> timed call, providers in use)
# Rows per OpenVINO infer call: each engine decodes in the chunk it ran fastest in on the shipped files
# (results/chunk_size.json: OpenVINO's int8 rate rose with the chunk up to 4,096 rows, its float32 rate was
# level); the SDK in its own default (CPU_CHUNK), torch in its own (training/bench_engines.py).
OPENVINO_CHUNK = 4096
REPLY = "@bench "  # marks an engine subprocess's answers on its stdout (serve)


def openvino_engine(model: Path, threads: int, chunk: int = OPENVINO_CHUNK) -> Engine:
    """The same ONNX file compiled by OpenVINO's CPU plugin, float32 forced, doing the SDK's work: the
    artifact's mixture prior at its temperature (the SDK's own sampler), decoded ``chunk`` rows per call.
    Given the int8 file, OpenVINO runs its quantised ops in int8 and the rest in float32."""
    try:
        import openvino as ov
    except ImportError as err:
        raise ImportError("openvino is not installed (pip install 'cvae-sdk[openvino]')") from err

    from cvae_sdk.artifact import INPUT_Y, INPUT_Z
    from cvae_sdk.generator import Generator
    from cvae_sdk.latents import prior_latents, request_key

    config = Generator.from_pretrained(model, providers=["CPUExecutionProvider"]).config
    compiled = ov.Core().compile_model(str(model), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                           "INFERENCE_PRECISION_HINT": "f32",
                                                           "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    eye = np.eye(config.num_classes, dtype=np.float32)
    temperature = config.sampling_temperature(None)

    def make(batch: int) -> Callable[[], object]:
        labels = np.arange(batch) % config.num_classes

        def call() -> object:
            key = request_key(0)
            out = np.empty((batch, *config.sample_shape), dtype=np.float32)
            for lo in range(0, batch, chunk):
                ids = labels[lo:lo + chunk]
                z = prior_latents(config.prior, ids, key, lo, temperature)
                out[lo:lo + ids.shape[0]] = request.infer({INPUT_Z: z, INPUT_Y: eye[ids]})[0]
            return out

        return call

    return make, [f"openvino-{ov.__version__.split('-')[0]}-CPU"]


def sdk_engine(model: Path, threads: int, providers: list[Any], output_type: OutputType = "np",
               chunk: int | None = None) -> Engine:
    """``Generator.generate`` on the file, in the Generator's default chunk unless ``chunk`` is given."""
    from cvae_sdk.generator import Generator

    gen = Generator.from_pretrained(model, providers=providers, threads=threads, chunk_size=chunk)
    k = gen.config.num_classes

    def make(batch: int) -> Callable[[], object]:
        labels = np.arange(batch) % k
        return lambda: gen.generate(labels, 1, rng=0, output_type=output_type)

    return make, gen.providers


def build_engine(engine: str, model: Path, threads: int, cuda_options: dict[str, str] | None = None) -> Engine:
    """The named engine on ``model``: (batch -> timed call, providers in use)."""
    if engine in ("sdk-fp32", "sdk-int8"):
        return sdk_engine(model, threads, ["CPUExecutionProvider"])
    if engine in SDK_OUTPUT:
        provider = (CUDA_PROVIDER[0], {**CUDA_PROVIDER[1], **(cuda_options or {})})
        return sdk_engine(model, threads, [provider], SDK_OUTPUT[engine])
    if engine in ("openvino", "openvino-int8"):
        return openvino_engine(model, threads)
    from cvae_sdk.backends import capability

    built: Engine = capability("torch", "bench_engine")(
        model, threads, "cuda" if engine.startswith("torch-cuda") else "cpu",
        compiled=engine == "torch-compile", to_host=not engine.endswith("-device"),
        graphs=engine.startswith("torch-cuda-graphs"))
    return built


def serve(engine: str, model: Path, threads: int, cuda_options: dict[str, str] | None = None) -> None:
    """The engine's side of an interleaved bench, in a subprocess of its own (:mod:`cvae_sdk.bench.run`).

    Builds the engine once and says which providers it uses, then answers one timing window per request
    line on stdin: ``{"batch", "seconds", "warmup", "min_calls", "max_calls"}`` -> the window's seconds per
    call and the process's peak RSS so far. Every answer is one stdout line starting with :data:`REPLY`,
    so whatever else an engine prints is ignored.
    """
    make, providers = build_engine(engine, model, threads, cuda_options)
    print(REPLY + json.dumps({"providers": providers}), flush=True)
    calls: dict[int, Callable[[], object]] = {}
    for line in sys.stdin:
        ask = json.loads(line)
        batch = ask["batch"]
        if batch not in calls:
            calls[batch] = make(batch)
        times = time_calls(calls[batch], ask["seconds"], max_calls=ask["max_calls"], warmup=ask["warmup"],
                           min_calls=ask["min_calls"])
        print(REPLY + json.dumps({"times": times, "peak_rss_mb": peak_rss_mb()}), flush=True)


def batcher_benchmark(model: Path, threads: int, callers: int = 64, per_caller: int = 40,
                      max_batch: int = 256, max_delay_ms: float = 2.0) -> dict[str, Any]:
    """``callers`` threads each asking for one image at a time: direct ``generate`` vs the batcher."""
    from concurrent.futures import ThreadPoolExecutor

    from cvae_sdk.generator import Generator

    gen = Generator.from_pretrained(model, providers=["CPUExecutionProvider"], threads=threads)
    k = gen.config.num_classes

    def direct(caller: int) -> None:
        for i in range(per_caller):
            gen.generate((caller + i) % k, 1, rng=caller * per_caller + i)

    def batched(caller: int, batcher: Any) -> None:
        futures = []
        for i in range(per_caller):
            futures.append(batcher.submit((caller + i) % k, 1, rng=caller * per_caller + i))
            futures[-1].result()  # one request in flight per caller, as in a web handler

    results = {}
    for mode in ("direct", "batcher"):
        with ThreadPoolExecutor(max_workers=callers) as pool:
            if mode == "direct":
                list(pool.map(direct, range(2)))  # warm-up
                t0 = time.perf_counter()
                list(pool.map(direct, range(callers)))
            else:
                with gen.batcher(max_batch=max_batch, max_delay_ms=max_delay_ms) as batcher:
                    list(pool.map(lambda c: batched(c, batcher), range(2)))
                    t0 = time.perf_counter()
                    list(pool.map(lambda c: batched(c, batcher), range(callers)))
            results[mode] = callers * per_caller / (time.perf_counter() - t0)
    # The most any batcher could reach: one generate call for all the callers' images at once
    # (every caller in one batch, no per-request work), in this process and this run.
    whole = np.arange(callers) % k
    ceiling = callers / float(np.median(time_calls(lambda: gen.generate(whole, 1, rng=0), 1.0, 1000, warmup=3)))
    return {"callers": callers, "requests": callers * per_caller, "direct_samples_per_s": results["direct"],
            "batcher_samples_per_s": results["batcher"], "speedup": results["batcher"] / results["direct"],
            "ceiling_samples_per_s": ceiling, "ceiling_speedup": ceiling / results["direct"],
            "max_batch": max_batch, "max_delay_ms": max_delay_ms}

