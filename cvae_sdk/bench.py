"""Sampling throughput: the SDK against PyTorch on the same weights, in one run.

Each engine runs in its own subprocess, so its peak RSS is its own. For every batch size the
engine is warmed up, then called repeatedly; samples/s comes from the median call. The roofline
ratio divides achieved FLOP/s (FLOPs per sample counted from the ONNX graph) by a float32 GEMM
measured in the same run with the same threads (without a host's pin of OpenBLAS to its AVX2
kernel, which halves an AVX-512 CPU's peak: :data:`PEAK_ENV_UNSET`), or for the int8 engines by
onnxruntime's int8 matrix multiply; the JSON's ``gemm`` says which BLAS kernel ran and how.

Engines: ``sdk-fp32``, ``sdk-int8`` (given an int8 artifact), ``torch-eager`` and
``torch-compile`` (the torch training backend's ``bench_engine``, which needs the [train] extra;
the decoder is rebuilt from the artifact's own initializers), ``openvino`` and ``openvino-int8``
(OpenVINO's CPU plugin on the float32 and the int8 file; the [openvino] extra), and on CUDA machines the SDK's CUDA
fast path against PyTorch CUDA eager, like with like: ``sdk-cuda`` and ``torch-cuda`` copy float32
samples to the host; ``sdk-cuda-device`` and ``torch-cuda-device`` leave them on the GPU;
``sdk-cuda-uint8`` converts on the device (a quarter of the bytes to the host) and
``sdk-cuda-fp16`` runs a float16 artifact, output on the GPU.

Every engine does the same work: it samples the artifact's whole mixture prior at its temperature
and decodes in the same chunks. What differs, and is stated: torch draws its noise where it runs
(on the GPU for CUDA), the SDK on the host (counter-based, so samples do not depend on batching).
TF32 is off on both sides (onnxruntime's ``use_tf32=0``; torch's matmul and cuDNN flags), and the
CUDA roofline is a GEMM timed with torch on the same GPU in the same precision (float32 without
TF32; float16 for the fp16 engine).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk.request import OutputType

BATCHES = (1, 16, 256, 4096, 65536)
CPU_ENGINES = ("torch-eager", "torch-compile", "openvino", "openvino-int8", "sdk-fp32", "sdk-int8")
COMPETITORS = ("torch-eager", "torch-compile", "openvino")  # float32 engines: what sdk-fp32 is compared with
INT8_COMPETITORS = ("openvino-int8",)  # the same int8 file elsewhere: sdk-int8 meets these too
INT8_ENGINES = ("sdk-int8", "openvino-int8")  # engines that run the int8 artifact
LOADED_CORES = 0.25  # other processes' average busy cores during a run above which the report warns
CUDA_ENGINES = ("torch-cuda", "torch-cuda-device", "torch-cuda-graphs", "torch-cuda-graphs-device", "sdk-cuda",
                "sdk-cuda-uint8", "sdk-cuda-device", "sdk-cuda-fp16")
# On CUDA, each SDK engine against the torch engines that hand over the same thing: host arrays, or
# tensors left on the GPU (uint8 is the SDK's way to host arrays, fp16 its way to device ones)
CUDA_COMPETITORS = {"sdk-cuda": ("torch-cuda", "torch-cuda-graphs"),
                    "sdk-cuda-uint8": ("torch-cuda", "torch-cuda-graphs"),
                    "sdk-cuda-device": ("torch-cuda-device", "torch-cuda-graphs-device"),
                    "sdk-cuda-fp16": ("torch-cuda-device", "torch-cuda-graphs-device")}
CUDA_PROVIDER = ("CUDAExecutionProvider", {"use_tf32": "0"})  # TF32 off: float32 against torch's float32
SDK_OUTPUT: dict[str, OutputType] = {"sdk-cuda": "np", "sdk-cuda-uint8": "uint8", "sdk-cuda-device": "device",
                                     "sdk-cuda-fp16": "device"}


def time_calls(call: Callable[[], object], min_seconds: float, max_calls: int, warmup: int,
               min_calls: int = 5) -> list[float]:
    """Seconds per call after ``warmup`` calls, for at least ``min_calls`` calls and ``min_seconds``."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - started < min_seconds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


# Some hosts set these to pin OpenBLAS to its AVX2 kernel (half the peak of a full-width AVX-512 CPU);
# the peak is measured without them, in its own process only: tests, CI and the engines keep them.
PEAK_ENV_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def gemm_flops(threads: int, n: int = 2048, repeats: int = 5, *, as_set: bool = False) -> dict[str, Any]:
    """Median float32 GEMM FLOP/s in a subprocess with ``threads`` BLAS threads, and the BLAS kernel that ran.

    Measured with :data:`PEAK_ENV_UNSET` removed from the environment, unless ``as_set``. The kernel
    comes from threadpoolctl (None without it).
    """
    code = ("import json, numpy as np, time, statistics\n"
            f"a = np.random.default_rng(0).standard_normal(({n}, {n}), dtype=np.float32); b = a.T.copy()\n"
            "a @ b\nts = []\n"
            f"for _ in range({repeats}):\n    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)\n"
            "try:\n    import threadpoolctl\n"
            "    blas = [{k: i.get(k) for k in ('internal_api', 'architecture', 'version', 'num_threads')}\n"
            "            for i in threadpoolctl.threadpool_info() if i.get('user_api') == 'blas']\n"
            "except ImportError:\n    blas = None\n"
            f"print(json.dumps({{'flops_per_s': 2 * {n}**3 / statistics.median(ts), 'blas': blas}}))")
    env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    if not as_set:
        for name in PEAK_ENV_UNSET:
            env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def gemm_peaks(threads: int) -> dict[str, Any]:
    """The CPU's float32 and int8 matrix rates, and how each was measured (the bench JSON's ``gemm``)."""
    peak = gemm_flops(threads)
    found = {name: os.environ[name] for name in PEAK_ENV_UNSET if name in os.environ}
    report: dict[str, Any] = {"float32_flops_per_s": peak["flops_per_s"], "blas": peak["blas"],
                              "float32_how": "numpy float32 2048x2048 GEMM, median of 5, in a subprocess with "
                                             f"{threads} BLAS threads and {', '.join(PEAK_ENV_UNSET)} unset",
                              "environment_unset": found, "int8_ops_per_s": int8_gemm_ops(threads),
                              "int8_how": "onnxruntime MatMulInteger (uint8 x int8 -> int32) 2048x2048, median of "
                                          f"5, {threads} intra-op threads"}
    if found:  # what the host's own settings give, for comparison
        as_set = gemm_flops(threads, as_set=True)
        report["float32_flops_per_s_as_set"], report["blas_as_set"] = as_set["flops_per_s"], as_set["blas"]
    return report


def int8_gemm_ops(threads: int, n: int = 2048, repeats: int = 5) -> float | None:
    """Median int8 matrix-multiply rate (2 n^3 / s) of onnxruntime's MatMulInteger; None without onnx."""
    try:
        from onnx import TensorProto, helper
    except ImportError:
        return None
    import onnxruntime as ort
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "int8_peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8), "b": rng.integers(-128, 128, (n, n), dtype=np.int8)}
    session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def gemm_flops_cuda(dtype: str, n: int = 8192, repeats: int = 10) -> float | None:
    """Median GEMM FLOP/s on the GPU with torch (``float32`` without TF32, or ``float16``); None without one."""
    code = ("import torch, time, statistics\n"
            "assert torch.cuda.is_available()\n"
            "torch.backends.cuda.matmul.allow_tf32 = False\n"
            f"a = torch.randn({n}, {n}, device='cuda', dtype=torch.{dtype}); b = torch.randn_like(a)\n"
            "a @ b; torch.cuda.synchronize(); ts = []\n"
            f"for _ in range({repeats}):\n"
            "    t = time.perf_counter(); a @ b; torch.cuda.synchronize(); ts.append(time.perf_counter() - t)\n"
            f"print(2 * {n}**3 / statistics.median(ts))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(done.stdout.strip()) if done.returncode == 0 else None


def flops_per_sample(model: Path) -> float:
    """Multiply-adds x 2 per sample of every Gemm/MatMul/Conv/ConvTranspose in the graph (needs onnx)."""
    import onnx
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(onnx.load(str(model))).graph
    shapes: dict[str, list[int]] = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]  # 0: dynamic
              for v in [*graph.value_info, *graph.input, *graph.output]}
    shapes.update({init.name: list(init.dims) for init in graph.initializer})
    total = 0.0
    for node in graph.node:
        if node.op_type in ("Gemm", "MatMul", "MatMulInteger"):
            w = shapes[node.input[1]]
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            k, n = (w[1], w[0]) if trans_b else (w[-2], w[-1])
            total += 2.0 * k * n
        elif node.op_type in ("Conv", "ConvTranspose"):
            w, out, inp = shapes[node.input[1]], shapes[node.output[0]], shapes[node.input[0]]
            spatial = math.prod(out[2:] if node.op_type == "Conv" else inp[2:])
            total += 2.0 * math.prod(w) * spatial  # the weight holds Cout*Cin/g*kh*kw (Cin*Cout/g*kh*kw)
    return total


def machine() -> dict[str, Any]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


# --- engines (run inside the worker subprocess) ---------------------------------------------------

Engine = tuple[Callable[[int], Callable[[], object]], list[str]]  # (batch -> timed call, providers in use)


def _openvino_engine(model: Path, threads: int) -> Engine:
    """The same ONNX file compiled by OpenVINO's CPU plugin, float32 forced, doing the SDK's work: the
    artifact's mixture prior at its temperature (the SDK's own sampler), decoded in the same chunks.
    Given the int8 file, OpenVINO runs its quantised ops in int8 and the rest in float32."""
    try:
        import openvino as ov
    except ImportError as err:
        raise ImportError("openvino is not installed (pip install 'cvae-sdk[openvino]')") from err

    from cvae_sdk.artifact import INPUT_Y, INPUT_Z
    from cvae_sdk.generator import CPU_CHUNK, Generator
    from cvae_sdk.sampling import prior_latents, request_key

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
            for lo in range(0, batch, CPU_CHUNK):
                ids = labels[lo:lo + CPU_CHUNK]
                z = prior_latents(config.prior, ids, key, lo, temperature)
                out[lo:lo + ids.shape[0]] = request.infer({INPUT_Z: z, INPUT_Y: eye[ids]})[0]
            return out

        return call

    return make, [f"openvino-{ov.__version__.split('-')[0]}-CPU"]


def _sdk_engine(model: Path, threads: int, providers: list[Any], output_type: OutputType = "np") -> Engine:
    from cvae_sdk.generator import Generator

    gen = Generator.from_pretrained(model, providers=providers, threads=threads)
    k = gen.config.num_classes

    def make(batch: int) -> Callable[[], object]:
        labels = np.arange(batch) % k
        return lambda: gen.generate(labels, 1, rng=0, output_type=output_type)

    return make, gen.providers


def worker(engine: str, model: Path, threads: int, batches: list[int], min_seconds: float,
           cuda_options: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Measure one engine; called in a fresh subprocess by :func:`run_benchmark`."""
    if engine in ("sdk-fp32", "sdk-int8"):
        make, providers = _sdk_engine(model, threads, ["CPUExecutionProvider"])
    elif engine in SDK_OUTPUT:
        provider = (CUDA_PROVIDER[0], {**CUDA_PROVIDER[1], **(cuda_options or {})})
        make, providers = _sdk_engine(model, threads, [provider], SDK_OUTPUT[engine])
    elif engine in ("openvino", "openvino-int8"):
        make, providers = _openvino_engine(model, threads)
    else:
        from cvae_sdk.backends import capability

        make, providers = capability("torch", "bench_engine")(
            model, threads, "cuda" if engine.startswith("torch-cuda") else "cpu",
            compiled=engine == "torch-compile", to_host=not engine.endswith("-device"),
            graphs=engine.startswith("torch-cuda-graphs"))
    rows = []
    for batch in batches:
        call = make(batch)
        huge = batch >= 65536  # one call can take seconds: fewer, still median-of-several
        times = time_calls(call, min_seconds, max_calls=5000 if batch <= 16 else 1000, warmup=1 if huge else 3,
                           min_calls=3 if huge else 5)
        median = float(np.median(times))
        rows.append({"engine": engine, "batch": batch, "samples_per_s": batch / median,
                     "p50_us": median * 1e6, "p99_us": float(np.percentile(times, 99)) * 1e6, "calls": len(times),
                     "peak_rss_mb": peak_rss_mb(), "providers": providers})
    return rows


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


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its reaped children)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def host_load(start: tuple[float, float], seconds: float) -> dict[str, Any]:
    """How busy other processes kept the CPU since ``start``, on average in cores, and a warning if too busy."""
    busy, own = cpu_seconds()
    others = max(0.0, (busy - start[0]) - (own - start[1])) / max(seconds, 1e-9)
    warning = (f"the host was loaded: other processes kept {others:.2f} cores busy on average during this run; "
               "ratios within the run still compare, absolute rates are low") if others > LOADED_CORES else None
    return {"other_busy_cores": others, "warning": warning}


def _in_subprocess(code: str) -> Any:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_benchmark(model: Path, *, int8_model: Path | None = None, fp16_model: Path | None = None,
                  threads: int = 2, batches: tuple[int, ...] = BATCHES, engines: tuple[str, ...] | None = None,
                  min_seconds: float = 1.0, cuda_options: dict[str, str] | None = None) -> dict[str, Any]:
    """Every engine on the same weights, one subprocess each; returns the whole report.

    ``cuda_options`` (onnxruntime CUDA provider options) go to the SDK's CUDA engines."""
    import onnxruntime as ort

    if engines is None:
        engines = CPU_ENGINES + (CUDA_ENGINES if "CUDAExecutionProvider" in ort.get_available_providers() else ())
    started, load_start = time.perf_counter(), cpu_seconds() if Path("/proc/stat").is_file() else None
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    artifact = {"sdk-int8": int8_model, "openvino-int8": int8_model, "sdk-cuda-fp16": fp16_model}
    for engine in engines:
        path = artifact.get(engine, model)
        if path is None:
            flag = "int8" if engine in INT8_ENGINES else "fp16"
            skipped[engine] = f"no {flag} artifact (export with --{flag}, pass --{flag}-model)"
            continue
        args = f"{engine!r}, Path({str(path)!r}), {threads}, {list(batches)!r}, {min_seconds}, {cuda_options!r}"
        code = ("import json; from pathlib import Path; from cvae_sdk.bench import worker; "
                f"print(json.dumps(worker({args})))")
        result = _in_subprocess(code)
        if isinstance(result, dict):
            skipped[engine] = result["error"]
        else:
            rows.extend(result)
    peaks = gemm_peaks(threads)
    gemm, gemm_int8 = peaks["float32_flops_per_s"], peaks["int8_ops_per_s"]
    on_gpu = any(row["engine"] in CUDA_ENGINES for row in rows)
    gemm_cuda = {dtype: gemm_flops_cuda(dtype) if on_gpu else None for dtype in ("float32", "float16")}
    try:
        per_sample: float | None = flops_per_sample(model)  # the fp32 graph's math, for every engine
    except ImportError:
        per_sample = None
    for row in rows:
        peak = gemm_int8 if row["engine"] in INT8_ENGINES else gemm
        if row["engine"] in CUDA_ENGINES:
            peak = gemm_cuda["float16" if row["engine"] == "sdk-cuda-fp16" else "float32"] or 0.0
        row["roofline_ratio"] = row["samples_per_s"] * per_sample / peak if per_sample and peak else None
    batcher = _in_subprocess(f"import json; from pathlib import Path; from cvae_sdk.bench import batcher_benchmark; "
                             f"print(json.dumps(batcher_benchmark(Path({str(model)!r}), {threads})))")
    load = host_load(load_start, time.perf_counter() - started) if load_start is not None else None
    return {"benchmark": "sampling_throughput", "model": str(model), "host_load": load,
            "int8_model": str(int8_model) if int8_model else None, "threads": threads, "machine": machine(),
            "fp16_model": str(fp16_model) if fp16_model else None, "cuda_options": cuda_options or {},
            "gemm_flops_per_s": gemm, "gemm": peaks, "gemm_cuda_flops_per_s": gemm_cuda,
            "flops_per_sample": per_sample, "roofline_samples_per_s": gemm / per_sample if per_sample else None,
            "int8_roofline_samples_per_s": gemm_int8 / per_sample if per_sample and gemm_int8 else None,
            "rows": rows, "skipped": skipped, "batcher": batcher, "ratios": _ratios(rows),
            "vs_best_competitor": vs_best_competitor(rows)}


def _ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """SDK throughput over PyTorch eager (and int8 over fp32), per batch size, within this run."""
    rate = {(r["engine"], r["batch"]): r["samples_per_s"] for r in rows}
    pairs = {"sdk-fp32/torch-eager": ("sdk-fp32", "torch-eager"), "sdk-int8/sdk-fp32": ("sdk-int8", "sdk-fp32"),
             "sdk-cuda/torch-cuda": ("sdk-cuda", "torch-cuda"),
             "sdk-cuda-device/torch-cuda-device": ("sdk-cuda-device", "torch-cuda-device")}
    out: dict[str, dict[str, float]] = {}
    for name, (a, b) in pairs.items():
        values = {str(batch): rate[(a, batch)] / rate[(b, batch)] for (engine, batch) in rate
                  if engine == a and (b, batch) in rate}
        if values:
            out[name] = values
    return out


def vs_best_competitor(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per batch: the fastest float32 competitor (torch eager, torch.compile, OpenVINO) and sdk-fp32's
    ratio to it; the fastest of those and OpenVINO on the int8 file, and sdk-int8's ratio to that;
    on CUDA, each SDK engine's ratio to the fastest torch engine with the same output (eager or
    CUDA graphs, ``CUDA_COMPETITORS``)."""
    out: dict[str, dict[str, Any]] = {}
    pools = [("sdk-fp32", "best_competitor", COMPETITORS),
             ("sdk-int8", "best_competitor_int8", COMPETITORS + INT8_COMPETITORS),
             *((sdk, f"best_competitor_{sdk}", pool) for sdk, pool in CUDA_COMPETITORS.items())]
    for batch in sorted({r["batch"] for r in rows}):
        here = {r["engine"]: r["samples_per_s"] for r in rows if r["batch"] == batch}
        entry: dict[str, Any] = {}
        for sdk, field, pool in pools:
            rivals = {e: v for e, v in here.items() if e in pool}
            if rivals:
                best = max(rivals, key=lambda e: rivals[e])
                entry[field] = best
                if sdk in here:
                    entry[f"{sdk}/best"] = here[sdk] / rivals[best]
        if entry:
            out[str(batch)] = entry
    return out


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'engine':<16}{'batch':>7}{'samples/s':>12}{'p50 us':>11}{'p99 us':>11}{'RSS MB':>9}{'roofline':>10}"]
    for r in report["rows"]:
        roof = f"{r['roofline_ratio']:.2f}" if r.get("roofline_ratio") is not None else "-"
        lines.append(f"{r['engine']:<16}{r['batch']:>7}{r['samples_per_s']:>12.0f}{r['p50_us']:>11.1f}"
                     f"{r['p99_us']:>11.1f}{r['peak_rss_mb']:>9.0f}{roof:>10}")
    for engine, why in report["skipped"].items():
        lines.append(f"{engine:<16} skipped: {why}")
    peaks = report.get("gemm") or {}
    if peaks:
        kernel = ", ".join(f"{b['internal_api']} {b['architecture']}" for b in peaks["blas"] or []) or "unknown"
        unset = f", {', '.join(peaks['environment_unset'])} unset" if peaks["environment_unset"] else ""
        int8 = f"; int8 peak {peaks['int8_ops_per_s'] / 1e9:.0f} GOP/s" if peaks["int8_ops_per_s"] else ""
        lines.append(f"roofline: float32 peak {peaks['float32_flops_per_s'] / 1e9:.0f} GFLOP/s ({kernel}{unset})"
                     f"{int8}")
    for batch, best in report.get("vs_best_competitor", {}).items():
        parts = [f"sdk-fp32 {best['sdk-fp32/best']:.2f}x the best float32 competitor ({best['best_competitor']})"
                 if "sdk-fp32/best" in best else "",
                 f"sdk-int8 {best['sdk-int8/best']:.2f}x the best competitor ({best['best_competitor_int8']})"
                 if "sdk-int8/best" in best else ""]
        parts += [f"{sdk} {best[sdk + '/best']:.2f}x {best['best_competitor_' + sdk]}"
                  for sdk in CUDA_COMPETITORS if sdk + "/best" in best]
        lines.append(f"batch {batch:>6}: " + "; ".join(part for part in parts if part))
    if (report.get("host_load") or {}).get("warning"):
        lines.append(f"WARNING: {report['host_load']['warning']}")
    b = report["batcher"]
    if "speedup" in b:
        lines.append(f"batcher: {b['callers']} concurrent single-image callers: {b['direct_samples_per_s']:.0f} -> "
                     f"{b['batcher_samples_per_s']:.0f} samples/s ({b['speedup']:.1f}x; one batch of all "
                     f"{b['callers']}: {b['ceiling_samples_per_s']:.0f}/s, {b['ceiling_speedup']:.1f}x)")
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> None:
    """samples/s against batch size, one line per engine (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for engine in dict.fromkeys(r["engine"] for r in report["rows"]):
        pts = [(r["batch"], r["samples_per_s"]) for r in report["rows"] if r["engine"] == engine]
        ax.plot(*zip(*pts, strict=True), marker="o", label=engine)
    if report.get("roofline_samples_per_s"):
        ax.axhline(report["roofline_samples_per_s"], color="grey", linestyle="--", label="fp32 GEMM roofline")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples/s",
           title=f"Sampling throughput, {report['threads']} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
