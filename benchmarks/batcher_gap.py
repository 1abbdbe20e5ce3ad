"""The micro-batcher's arrival gap: 64 single-image callers, one request each in flight, through a
batcher that closes a batch once arrivals pause (``max_gap_ms``, the default) against one that waits
out its whole ``max_delay_ms``, and against calling ``generate`` directly from the same threads.

The three modes alternate ``--rounds`` times in one process on one Generator per model (the host is
shared and noisy: only ratios within a run mean anything); the table gives each mode's median
samples/s. Prints one JSON line; ``--out`` also writes it.

    python benchmarks/batcher_gap.py --out benchmarks/results/batcher_gap.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cvae_sdk import Generator
from cvae_sdk.bench import machine
from cvae_sdk.generator import model_file

CALLERS = 64


def modes(gen: Generator, per_caller: int, delay_ms: float, gap_ms: float, stack: ExitStack
          ) -> dict[str, Callable[[int], None]]:
    k = gen.config.num_classes

    def direct(caller: int) -> None:
        for i in range(per_caller):
            gen.generate((caller + i) % k, 1, rng=caller * per_caller + i)

    def through(batcher: Any) -> Callable[[int], None]:
        def one_caller(caller: int) -> None:
            for i in range(per_caller):  # one request in flight per caller, as in a web handler
                batcher.submit((caller + i) % k, 1, rng=caller * per_caller + i).result()
        return one_caller

    full = stack.enter_context(gen.batcher(max_delay_ms=delay_ms, max_gap_ms=delay_ms))
    gapped = stack.enter_context(gen.batcher(max_delay_ms=delay_ms, max_gap_ms=gap_ms))
    return {"direct": direct, "batcher, waits out the delay": through(full),
            f"batcher, {gap_ms:g} ms gap": through(gapped)}


def measure(model: Path, threads: int, rounds: int, per_caller: int, delay_ms: float, gap_ms: float
            ) -> dict[str, Any]:
    gen = Generator.from_pretrained(model, providers=["CPUExecutionProvider"], threads=threads)
    rates: dict[str, list[float]] = {}
    with ThreadPoolExecutor(max_workers=CALLERS) as pool, ExitStack() as stack:
        runs = modes(gen, per_caller, delay_ms, gap_ms, stack)
        for call in runs.values():  # warm-up
            list(pool.map(call, range(2)))
        for _ in range(rounds):
            for name, call in runs.items():
                started = time.perf_counter()
                list(pool.map(call, range(CALLERS)))
                rates.setdefault(name, []).append(CALLERS * per_caller / (time.perf_counter() - started))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    names = list(medians)
    return {"model": model.name, "samples_per_s": rates, "median_samples_per_s": medians,
            "gap_vs_full_delay": medians[names[2]] / medians[names[1]],
            "gap_vs_direct": medians[names[2]] / medians[names[0]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="artifact (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-caller", type=int, default=150)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    parser.add_argument("--max-gap-ms", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = args.model or model_file(None, None)
    results = [measure(path, args.threads, args.rounds, args.per_caller, args.max_delay_ms, args.max_gap_ms)
               for path in (model, model_file(model, "int8"))]
    report = {"benchmark": "batcher_gap", "machine": machine(), "threads": args.threads, "callers": CALLERS,
              "per_caller": args.per_caller, "rounds": args.rounds, "max_delay_ms": args.max_delay_ms,
              "max_gap_ms": args.max_gap_ms, "models": results}
    for row in results:
        cells = ", ".join(f"{name} {rate:,.0f}" for name, rate in row["median_samples_per_s"].items())
        print(f"{row['model']}: {cells} samples/s; gap / full delay {row['gap_vs_full_delay']:.2f}x, "
              f"gap / direct {row['gap_vs_direct']:.2f}x")
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
