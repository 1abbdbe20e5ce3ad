"""Load test of ``cvae-sdk serve`` on loopback: requests/s, samples/s, p50 and p99 at 1, 16 and 64
concurrent clients, against in-process ``Generator.generate`` for the same requests, in one run.

Each client sends single-image ``POST /v1/generate`` requests (``.npy`` float32) back to back for
``--seconds`` on its own keep-alive connection (all clients are asyncio tasks in this process, raw
HTTP/1.1, so the load generator costs little per request); the server is a subprocess on
127.0.0.1 at an ephemeral port. Every loop is bounded
in time and count. Prints a table, then one JSON line; ``--out`` also writes the JSON.

    python benchmarks/serve_load.py --seconds 5 --out benchmarks/results/serve_load.json
    python benchmarks/serve_load.py --workers 2 --out benchmarks/results/serve_load_workers.json
    python benchmarks/serve_load.py --provider CUDAExecutionProvider --seconds 3   # on a GPU machine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk import Generator
from cvae_sdk.bench import machine
from cvae_sdk.serving.replicas import worker_threads

MAX_REQUESTS_PER_CLIENT = 20_000


def start_server(model: str | None, threads: int, delay_ms: float, workers: int, provider: str
                 ) -> tuple[subprocess.Popen[str], str]:
    return launch(model, ["--threads", str(threads), "--max-delay-ms", str(delay_ms), "--workers", str(workers),
                          "--provider", provider])


def launch(model: str | None, flags: list[str]) -> tuple[subprocess.Popen[str], str]:
    """``cvae-sdk serve`` on an ephemeral port with ``flags``, once its model answers /readyz: the process, its URL."""
    args = [sys.executable, "-m", "cvae_sdk", "serve", "--port", "0", *flags]
    server = subprocess.Popen(args + ([model] if model else []), stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if "serving on" not in line:
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    url = line.split()[-1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the model did not load within 60 s")


async def client_loop(host: str, port: int, client: int, seconds: float) -> list[float]:
    """One client on one keep-alive connection, as a service calling the API would hold one: raw
    HTTP/1.1 on an asyncio stream, so the load generator's own cost per request stays small."""
    reader, writer = await asyncio.open_connection(host, port)
    latencies = []
    deadline = time.perf_counter() + seconds
    try:
        for i in range(MAX_REQUESTS_PER_CLIENT):
            if time.perf_counter() >= deadline:
                break
            body = json.dumps({"labels": [i % 10], "num_samples_per_label": 1,
                               "seed": client * 100_000 + i}).encode()
            started = time.perf_counter()
            writer.write(b"POST /v1/generate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"status {status}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()
    return latencies


def measure(url: str, clients: int, seconds: float) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80

    async def everyone() -> list[list[float]]:
        return list(await asyncio.gather(*(client_loop(host, port, c, seconds) for c in range(clients))))

    started = time.perf_counter()
    per_client = asyncio.run(everyone())
    elapsed = time.perf_counter() - started
    latencies = [t for client in per_client for t in client]
    return {"clients": clients, "requests": len(latencies), "requests_per_s": len(latencies) / elapsed,
            "samples_per_s": len(latencies) / elapsed, "p50_ms": 1e3 * statistics.median(latencies),
            "p99_ms": 1e3 * float(np.percentile(latencies, 99))}


def in_process(model: str | None, threads: int, seconds: float, provider: str) -> dict[str, Any]:
    gen = Generator.from_pretrained(model, providers=[provider], threads=threads)
    latencies = []
    deadline = time.perf_counter() + seconds
    for i in range(MAX_REQUESTS_PER_CLIENT):
        if time.perf_counter() >= deadline:
            break
        started = time.perf_counter()
        gen.generate([i % 10], 1, rng=i)
        latencies.append(time.perf_counter() - started)
    return {"requests_per_s": len(latencies) / sum(latencies), "p50_ms": 1e3 * statistics.median(latencies),
            "p99_ms": 1e3 * float(np.percentile(latencies, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="artifact (default: the shipped model)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime threads (default: the cores, shared out among the server's workers)")
    parser.add_argument("--workers", type=int, default=1, help="the server's processes (serve --workers)")
    parser.add_argument("--max-delay-ms", type=float, default=0.0, help="the server's batcher delay")
    parser.add_argument("--provider", default="CPUExecutionProvider",
                        help="execution provider of the server and the library (CUDAExecutionProvider on a GPU)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    local = in_process(args.model, args.threads or worker_threads(1), args.seconds, args.provider)
    server, url = start_server(args.model, args.threads or worker_threads(args.workers), args.max_delay_ms,
                               args.workers, args.provider)
    try:
        rows = [measure(url, clients, args.seconds) for clients in (1, 16, 64)]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    one = rows[0]
    report = {"benchmark": "serve_load", "machine": machine(), "seconds_per_level": args.seconds,
              "max_delay_ms": args.max_delay_ms, "workers": args.workers, "provider": args.provider,
              "model": args.model or "shipped", "in_process": local, "rows": rows,
              "speedup_64_vs_1": rows[-1]["requests_per_s"] / one["requests_per_s"],
              "server_overhead_ms_at_1": one["p50_ms"] - local["p50_ms"]}
    print(f"{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'library':>8}{local['requests_per_s']:>10.0f}{local['p50_ms']:>10.2f}{local['p99_ms']:>10.2f}")
    for row in rows:
        print(f"{row['clients']:>8}{row['requests_per_s']:>10.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}")
    print(f"64 clients / 1 client: {report['speedup_64_vs_1']:.2f}x; "
          f"server overhead at 1 client: {report['server_overhead_ms_at_1']:.2f} ms (p50)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
