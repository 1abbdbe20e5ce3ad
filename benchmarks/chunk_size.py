"""Rows per session run on CPU: each engine's sampling rate at several chunk sizes, on the shipped files.

    python benchmarks/chunk_size.py --out benchmarks/results/chunk_size.json

A large request is decoded chunk by chunk. The chunk sets how much of a layer's activations stays in
the CPU's caches, and each engine's kernels like a different size. For the SDK (``Generator``'s
``chunk_size``), OpenVINO's CPU plugin and torch eager and compiled, each on the shipped float32 file
and (SDK and OpenVINO) its int8 variant, every (engine, chunk) is built once and then timed in
interleaved rounds, so that every configuration sees the same machine; the figure is the median call.
Its result sets the SDK's ``CPU_CHUNK`` and the chunk each competitor gets in ``cvae-sdk bench``
(``OPENVINO_CHUNK``, ``TORCH_CPU_CHUNK``). Time it alone: another job on 2 cores skews every row.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk.bench import machine, time_calls
from cvae_sdk.bench.engines import openvino_engine, sdk_engine

ROOT = Path(__file__).resolve().parents[1]
FILES = {"fp32": ROOT / "exported" / "mnist-cvae.onnx", "int8": ROOT / "exported" / "mnist-cvae.int8.onnx"}
CHUNKS = {"sdk": (128, 256, 512, 1024, 4096), "openvino": (256, 1024, 4096), "torch": (256, 1024, 4096)}
THREADS, WINDOW_S = 2, 0.4


def engines(batch: int, with_torch: bool) -> dict[tuple[str, int], Callable[[], object]]:
    """(engine, chunk) -> the call that samples and decodes one ``batch``."""
    calls: dict[tuple[str, int], Callable[[], object]] = {}
    for variant, path in FILES.items():
        suffix = "-int8" if variant == "int8" else ""
        for chunk in CHUNKS["sdk"]:
            make, _ = sdk_engine(path, THREADS, ["CPUExecutionProvider"], chunk=chunk)
            calls[(f"sdk-{variant}", chunk)] = make(batch)
        for chunk in CHUNKS["openvino"]:
            make, _ = openvino_engine(path, THREADS, chunk=chunk)
            calls[(f"openvino{suffix}", chunk)] = make(batch)
    if with_torch:
        from cvae_sdk_training.bench_engines import torch_engine

        for compiled in (False, True):
            for chunk in CHUNKS["torch"]:
                make, _ = torch_engine(FILES["fp32"], THREADS, "cpu", compiled=compiled, chunk=chunk)
                calls[("torch-compile" if compiled else "torch-eager", chunk)] = make(batch)
    return calls


def interleaved(calls: dict[tuple[str, int], Callable[[], object]], rounds: int, warm: bool) -> dict[Any, list[float]]:
    """Seconds per call of each configuration, WINDOW_S of calls each per round (at least one)."""
    times: dict[Any, list[float]] = {key: [] for key in calls}
    for call in calls.values():  # first calls: sessions, compiled graphs, arenas
        call()
    for _ in range(rounds):
        for key, call in calls.items():
            # a warm-up call: the caches as this configuration leaves them, not as the previous one did
            times[key] += time_calls(call, WINDOW_S, max_calls=10**6, warmup=1 if warm else 0, min_calls=1)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, action="append", default=None, help="default: 4096 and 65536")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows, best = [], {}
    for batch in args.batch or [4096, 65536]:
        huge = batch >= 65536  # one call takes about a second: no warm-up call per window, no torch
        times = interleaved(engines(batch, with_torch=not huge), args.rounds, warm=not huge)
        for (engine, chunk), seconds in times.items():
            rate = batch / float(np.median(seconds))
            rows.append({"engine": engine, "chunk": chunk, "batch": batch, "samples_per_s": rate,
                         "calls": len(seconds)})
            print(f"{engine:15s} chunk {chunk:5d} batch {batch:6d} {rate:10,.0f} samples/s ({len(seconds)} calls)",
                  flush=True)
        for engine in dict.fromkeys(engine for engine, _ in times):
            mine = [r for r in rows if r["engine"] == engine and r["batch"] == batch]
            top = max(mine, key=lambda r: r["samples_per_s"])
            best[f"{engine}@{batch}"] = {"chunk": top["chunk"], "samples_per_s": top["samples_per_s"]}
    report = {"benchmark": "chunk_size", "threads": THREADS, "rounds": args.rounds, "window_s": WINDOW_S,
              "machine": machine(), "rows": rows, "best_chunk": best}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
