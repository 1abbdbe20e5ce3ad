"""Where a one-image ``Generator.generate`` call spends its time, step by step, in one run.

Times (median and p99 of ``--calls`` back-to-back calls, after a warm-up) the whole call, the
onnxruntime session run alone, and the Python steps around it: request validation, the noise draws,
the prior transform and the uint8 conversion. Prints one JSON line; ``--out`` also writes it.

    python benchmarks/batch1_overhead.py --out benchmarks/results/batch1_overhead.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk import Generator
from cvae_sdk.bench import machine, time_calls
from cvae_sdk.checks import to_uint8
from cvae_sdk.labels import request_labels
from cvae_sdk.latents import prior_noise, request_key, row_temperatures, transform


def timed(call: Callable[[], object], calls: int, warmup: int = 200) -> dict[str, float]:
    """Median and p99 µs of exactly ``calls`` calls after ``warmup`` (the bench's own timer)."""
    times = time_calls(call, 0.0, calls, warmup, min_calls=calls)
    return {"p50_us": float(np.median(times)) * 1e6, "p99_us": float(np.percentile(times, 99)) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="artifact (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    gen = Generator.from_pretrained(args.model, providers=["CPUExecutionProvider"], threads=args.threads)
    config = gen.config
    ids = np.array([3])
    key = request_key(0)
    eps, u = prior_noise(config.prior, key, 0, 1)
    temperature = row_temperatures(config.sampling_temperature(None), ids)
    z = transform(config.prior, ids, eps, u, temperature)
    feeds = {"z": z, "y": np.eye(config.num_classes, dtype=np.float32)[ids]}
    images = gen.generate(3, 1, rng=0).samples
    steps: dict[str, Callable[[], Any]] = {
        "generate": lambda: gen.generate(3, 1, rng=0),
        "session_run": lambda: gen._session.run(["samples"], feeds),
        "validate_labels": lambda: request_labels(3, 1, config.class_names),
        "request_key": lambda: request_key(0),
        "noise": lambda: prior_noise(config.prior, key, 0, 1),
        "prior_transform": lambda: transform(config.prior, ids, eps, u, temperature),
        "to_uint8": lambda: to_uint8(images),
    }
    report = {"benchmark": "batch1_overhead", "machine": machine(), "threads": args.threads, "calls": args.calls,
              "model": args.model or "shipped",
              "steps": {name: timed(call, args.calls) for name, call in steps.items()}}
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
