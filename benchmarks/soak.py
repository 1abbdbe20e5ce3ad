"""Soak: many ``generate`` calls of mixed sizes must not grow memory.

    python benchmarks/soak.py --calls 100000

RSS (VmRSS) is read after a warm-up and then every 10% of the calls; the drift is the last reading
minus the first. Prints a table, then one JSON line; writes ``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cvae_sdk import Generator
from cvae_sdk.bench import machine

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
SIZES = (1, 1, 1, 1, 2, 2, 4, 8, 16, 64)  # mostly tiny requests, now and then a larger one


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    gen = Generator.from_pretrained(args.model, providers=["CPUExecutionProvider"], threads=args.threads)
    plan = np.random.default_rng(0)
    sizes = plan.choice(SIZES, size=args.calls)
    labels = plan.integers(0, gen.config.num_classes, size=args.calls)
    for i in range(1000):  # warm-up: allocator pools and onnxruntime arenas reach their working size
        gen.generate(int(labels[i]), int(sizes[i]), rng=i)
    readings = [(0, rss_mb())]
    started = time.perf_counter()
    for i in range(args.calls):
        gen.generate(int(labels[i]), int(sizes[i]), rng=i, output_type="uint8" if i % 3 == 0 else "np")
        if (i + 1) % (args.calls // 10) == 0:
            readings.append((i + 1, rss_mb()))
    seconds = time.perf_counter() - started
    drift = readings[-1][1] - readings[0][1]
    for calls, mb in readings:
        print(f"{calls:>8} calls  {mb:8.1f} MB")
    report = {"benchmark": "soak", "calls": args.calls, "samples": int(sizes.sum()), "seconds": seconds,
              "rss_start_mb": readings[0][1], "rss_end_mb": readings[-1][1], "rss_drift_mb": drift,
              "rss_max_mb": max(mb for _, mb in readings), "readings": readings,
              "model": str(gen.model_path), "machine": machine()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
