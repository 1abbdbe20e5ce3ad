"""GPU memory a Generator holds, and its speed at 65,536 rows, by ``chunk_size`` (the most rows one
session run takes; larger requests are split) and onnxruntime's CUDA arena strategy.

Memory is the device's free memory (``torch.cuda.mem_get_info``, the driver's figure for the whole
GPU) before the Generator was opened and after it served requests of 1 to 65,536 rows.

    python benchmarks/gpu_memory.py OUT.json
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvae_sdk import Generator, shipped_model_path

MIB = 1 << 20
SIZES = (1, 256, 4096, 16384, 65536)
CONFIGS = [  # (chunk_size, extra CUDA provider options)
    (65536, {}), (16384, {}), (4096, {}), (65536, {"arena_extend_strategy": "kSameAsRequested"}),
    (16384, {"arena_extend_strategy": "kSameAsRequested"}),
]


def free_mib() -> float:
    torch.cuda.synchronize()
    return torch.cuda.mem_get_info()[0] / MIB


def measure(chunk: int, options: dict[str, str]) -> dict[str, Any]:
    gc.collect()
    before = free_mib()
    providers: list[Any] = [("CUDAExecutionProvider", options)]
    row: dict[str, Any] = {"chunk_size": chunk, "options": options, "held_mib_after": {}}
    with Generator.from_pretrained(shipped_model_path(), providers=providers, chunk_size=chunk) as gen:
        for n in SIZES:
            gen.generate(np.arange(n) % 10, 1, rng=n)
            row["held_mib_after"][str(n)] = before - free_mib()
        times = []
        for i in range(5):
            started = time.perf_counter()
            gen.generate(np.arange(65536) % 10, 1, rng=i)
            times.append(time.perf_counter() - started)
        row["samples_per_s_65536"] = 65536 / float(np.median(times[1:]))
    gc.collect()
    row["held_mib_after_close"] = before - free_mib()
    return row


def main() -> None:
    with Generator.from_pretrained(shipped_model_path(), providers=["CUDAExecutionProvider"]) as warm:
        warm.generate([0, 1], 2, rng=0)  # CUDA, cuDNN and cuBLAS loaded once, outside the readings
    rows = [measure(chunk, options) for chunk, options in CONFIGS]
    report = {"benchmark": "gpu_memory", "gpu": torch.cuda.get_device_name(), "rows": rows}
    for r in rows:
        held = {k: round(v) for k, v in r["held_mib_after"].items()}
        print(f"chunk {r['chunk_size']:>6} {r['options'] or 'defaults'}: held MiB {held}, after close "
              f"{r['held_mib_after_close']:.0f}; 65,536 rows: {r['samples_per_s_65536']:.0f} samples/s")
    Path(sys.argv[1]).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
