"""One bench run: every engine in a subprocess of its own, timed in interleaved rounds, the rooflines,
the batcher, the report.

The engines take turns: for each round, batch and engine, one timing window of ``min_seconds / ROUNDS``,
the engines' order rotating from round to round. On a shared machine whose speed drifts within minutes,
every engine then sees the same machine, and the ratios between engines hold what one run can promise;
timed one engine after another, two engines' rates could differ by the drift alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

from cvae_sdk.bench.engines import CPU_ENGINES, CUDA_ENGINES, INT8_ENGINES, REPLY
from cvae_sdk.bench.peaks import flops_per_sample, gemm_flops_cuda, gemm_peaks, machine
from cvae_sdk.bench.report import ratios, vs_best_competitor
from cvae_sdk.bench.timing import cpu_seconds, host_load

BATCHES = (1, 16, 256, 4096, 65536)
ROUNDS = 5
HUGE = 65536  # from this batch one call can take seconds: one call per window, still median-of-three


class EngineFailed(RuntimeError):
    """An engine's subprocess could not be built or stopped answering."""


class EngineProcess:
    """One engine in a subprocess of its own (its peak RSS is its own), answering timing windows."""

    def __init__(self, engine: str, model: Path, threads: int, cuda_options: dict[str, str] | None) -> None:
        self.engine = engine
        self._stderr: IO[str] = tempfile.TemporaryFile("w+")
        code = ("from pathlib import Path; from cvae_sdk.bench.engines import serve; "
                f"serve({engine!r}, Path({str(model)!r}), {threads}, {cuda_options!r})")
        self._process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.providers: list[str] = self._answer()["providers"]

    def window(self, batch: int, seconds: float, *, warmup: int, min_calls: int, max_calls: int) -> dict[str, Any]:
        """Seconds per call of one timing window, and the subprocess's peak RSS so far."""
        assert self._process.stdin is not None
        ask = {"batch": batch, "seconds": seconds, "warmup": warmup, "min_calls": min_calls, "max_calls": max_calls}
        try:
            self._process.stdin.write(json.dumps(ask) + "\n")
            self._process.stdin.flush()
        except OSError:
            pass  # it has exited: _answer reports why
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(REPLY):
                answer: dict[str, Any] = json.loads(line[len(REPLY):])
                return answer
        self._process.wait()
        self._stderr.seek(0)
        lines = self._stderr.read().strip().splitlines()
        raise EngineFailed(lines[-1] if lines else f"exited with code {self._process.returncode}")

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stderr.close()


def interleaved(processes: list[EngineProcess], batches: tuple[int, ...], min_seconds: float,
                skipped: dict[str, str]) -> list[dict[str, Any]]:
    """Each engine's rows, from ROUNDS rounds of one window per batch and engine; an engine that fails is
    dropped with its error in ``skipped``."""
    times: dict[tuple[str, int], list[float]] = {}
    rss: dict[tuple[str, int], float] = {}
    live = list(processes)
    for round_ in range(ROUNDS):
        for batch in batches:
            huge = batch >= HUGE
            turn = round_ % len(live) if live else 0
            for process in live[turn:] + live[:turn]:
                key = (process.engine, batch)
                # warm-up: the first window builds the batch's call; later ones take back the caches
                warmup = (1 if huge else 3) if round_ == 0 else (0 if huge else 1)
                try:
                    answer = process.window(batch, min_seconds / ROUNDS, warmup=warmup, min_calls=1 if huge else 2,
                                            max_calls=(5000 if batch <= 16 else 1000) // ROUNDS)
                except EngineFailed as err:
                    skipped[process.engine] = str(err)
                    continue
                times.setdefault(key, []).extend(answer["times"])
                rss.setdefault(key, answer["peak_rss_mb"])  # the first round's: as if run batch by batch
            live = [p for p in live if p.engine not in skipped]
    rows = []
    for process in processes:
        if process.engine in skipped:
            continue
        for batch in batches:
            seconds = times[(process.engine, batch)]
            median = float(np.median(seconds))
            rows.append({"engine": process.engine, "batch": batch, "samples_per_s": batch / median,
                         "p50_us": median * 1e6, "p99_us": float(np.percentile(seconds, 99)) * 1e6,
                         "calls": len(seconds), "peak_rss_mb": rss[(process.engine, batch)],
                         "providers": process.providers})
    return rows


def in_subprocess(code: str) -> Any:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_benchmark(model: Path, *, int8_model: Path | None = None, fp16_model: Path | None = None,
                  threads: int = 2, batches: tuple[int, ...] = BATCHES, engines: tuple[str, ...] | None = None,
                  min_seconds: float = 1.0, cuda_options: dict[str, str] | None = None) -> dict[str, Any]:
    """Every engine on the same weights, one subprocess each, timed in interleaved rounds; returns the
    whole report.

    ``cuda_options`` (onnxruntime CUDA provider options) go to the SDK's CUDA engines."""
    import onnxruntime as ort

    if engines is None:
        engines = CPU_ENGINES + (CUDA_ENGINES if "CUDAExecutionProvider" in ort.get_available_providers() else ())
    started, load_start = time.perf_counter(), cpu_seconds() if Path("/proc/stat").is_file() else None
    skipped: dict[str, str] = {}
    artifact = {"sdk-int8": int8_model, "openvino-int8": int8_model, "sdk-cuda-fp16": fp16_model}
    processes = []
    try:
        for engine in engines:
            path = artifact.get(engine, model)
            if path is None:
                flag = "int8" if engine in INT8_ENGINES else "fp16"
                skipped[engine] = f"no {flag} artifact (export with --{flag}, pass --{flag}-model)"
                continue
            try:
                processes.append(EngineProcess(engine, path, threads, cuda_options))
            except EngineFailed as err:
                skipped[engine] = str(err)
        rows = interleaved(processes, batches, min_seconds, skipped)
    finally:
        for process in processes:
            process.close()
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
            "int8_model": str(int8_model) if int8_model else None, "threads": threads, "rounds": ROUNDS,
            "machine": machine(),
            "fp16_model": str(fp16_model) if fp16_model else None, "cuda_options": cuda_options or {},
            "gemm_flops_per_s": gemm, "gemm": peaks, "gemm_cuda_flops_per_s": gemm_cuda,
            "flops_per_sample": per_sample, "roofline_samples_per_s": gemm / per_sample if per_sample else None,
            "int8_roofline_samples_per_s": gemm_int8 / per_sample if per_sample and gemm_int8 else None,
            "rows": rows, "skipped": skipped, "batcher": batcher, "ratios": ratios(rows),
            "vs_best_competitor": vs_best_competitor(rows)}

