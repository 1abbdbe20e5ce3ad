"""One bench run: every engine in a subprocess of its own, the rooflines, the batcher, the report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cvae_sdk.bench.engines import CPU_ENGINES, CUDA_ENGINES, INT8_ENGINES
from cvae_sdk.bench.peaks import flops_per_sample, gemm_flops_cuda, gemm_peaks, machine
from cvae_sdk.bench.report import ratios, vs_best_competitor
from cvae_sdk.bench.timing import cpu_seconds, host_load

BATCHES = (1, 16, 256, 4096, 65536)


def in_subprocess(code: str) -> Any:
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
        code = ("import json; from pathlib import Path; from cvae_sdk.bench.engines import worker; "
                f"print(json.dumps(worker({args})))")
        result = in_subprocess(code)
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
    batcher = in_subprocess("import json; from pathlib import Path; from cvae_sdk.bench.engines import "
                            f"batcher_benchmark; print(json.dumps(batcher_benchmark(Path({str(model)!r}), {threads})))")
    load = host_load(load_start, time.perf_counter() - started) if load_start is not None else None
    return {"benchmark": "sampling_throughput", "model": str(model), "host_load": load,
            "int8_model": str(int8_model) if int8_model else None, "threads": threads, "machine": machine(),
            "fp16_model": str(fp16_model) if fp16_model else None, "cuda_options": cuda_options or {},
            "gemm_flops_per_s": gemm, "gemm": peaks, "gemm_cuda_flops_per_s": gemm_cuda,
            "flops_per_sample": per_sample, "roofline_samples_per_s": gemm / per_sample if per_sample else None,
            "int8_roofline_samples_per_s": gemm_int8 / per_sample if per_sample and gemm_int8 else None,
            "rows": rows, "skipped": skipped, "batcher": batcher, "ratios": ratios(rows),
            "vs_best_competitor": vs_best_competitor(rows)}

