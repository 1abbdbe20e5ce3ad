"""Streaming a huge `cvae-sdk sample ... --out x.npy`: peak RSS and rate against the in-memory rate.

    python benchmarks/stream_sample.py --n 100000          # 100,000 per digit: 1,000,000 samples

Runs the real CLI in a child process (its peak RSS from ``getrusage``), then, in this process,
times ``Generator.generate`` on the same chunk size in memory (the first chunk is a warm-up).
Prints a table, then one JSON line; writes ``benchmarks/results/stream_sample.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cvae_sdk import Generator, bench

RESULTS = Path(__file__).resolve().parent / "results" / "stream_sample.json"
DIGITS = [str(d) for d in range(10)]


def stream(n: int, dtype: str, folder: Path) -> dict[str, float]:
    out = folder / f"x-{dtype}.npy"
    labels = [arg for d in DIGITS for arg in ("--label", d)]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cvae_sdk", "sample", *labels, "--n", str(n), "--seed", "0",
                    "--dtype", dtype, "--out", str(out), "--quiet"], check=True, stdout=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux; max over children
    size = out.stat().st_size
    out.unlink()
    return {"seconds": seconds, "peak_rss_mb": peak_mb, "file_mb": size / 2**20}


def in_memory_rate(chunk: int, chunks: int) -> float:
    gen = Generator.from_pretrained()
    gen.generate(list(range(10)), chunk // 10, rng=1)  # warm-up
    started = time.perf_counter()
    for i in range(chunks):
        gen.generate(list(range(10)), chunk // 10, rng=i)
    return chunks * (chunk // 10) * 10 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="samples per digit")
    parser.add_argument("--dtype", default="float32", choices=["float32", "uint8"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        streamed = stream(args.n, args.dtype, Path(folder))
    total = 10 * args.n
    memory = in_memory_rate(4096, 25)
    row = {"samples": total, "dtype": args.dtype, "peak_rss_mb": round(streamed["peak_rss_mb"], 1),
           "file_mb": round(streamed["file_mb"], 1), "stream_samples_per_s": round(total / streamed["seconds"], 1),
           "in_memory_samples_per_s": round(memory, 1)}
    row["stream_over_memory"] = round(row["stream_samples_per_s"] / memory, 3)
    print(f"{'samples':>10}{'dtype':>9}{'peak RSS MB':>13}{'file MB':>9}{'stream/s':>10}{'memory/s':>10}{'ratio':>7}")
    print(f"{total:>10}{args.dtype:>9}{row['peak_rss_mb']:>13.1f}{row['file_mb']:>9.0f}"
          f"{row['stream_samples_per_s']:>10.0f}{memory:>10.0f}{row['stream_over_memory']:>7.2f}")
    report = {"benchmark": "stream_sample", "machine": bench.machine(), "results": [row],
              "note": "the streamed rate includes process start-up, model load and writing the file"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text())["results"] if RESULTS.is_file() else []
    report["results"] = [r for r in existing if r["dtype"] != args.dtype or r["samples"] != total] + [row]
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
