"""Overload run of ``cvae-sdk serve``: a storm of requests that time out, then how soon it serves again.

The server runs with a short timeout (``--timeout 0.02 --max-delay-ms 2 --max-queue 4096``, the
setting that once left it answering nobody for over a minute). The run:

1. before: ``--probes`` single-image requests, one at a time: how many are answered (200);
2. the storm: ``--clients`` threads send requests of 1 to 2,000 samples for ``--seconds``;
3. after: single-image requests one at a time for ``--watch`` seconds, from the storm's end:
   the time to the first 200, the share answered in each second, whether ``/readyz`` says 200
   and whether the answers equal ``Generator.generate``'s bytes;
4. SIGTERM after a second storm: how long the process takes to exit.

Prints one JSON line; ``--out`` also appends it. ``--server-flag`` passes more flags to ``serve``,
e.g. a sample limit so large that admission counts requests alone, as it once did.

    python benchmarks/serve_storm.py --out benchmarks/results/serve_storm.jsonl
    python benchmarks/serve_storm.py --server-flag=--max-queued-samples --server-flag=100000000 \
        --out benchmarks/results/serve_storm.jsonl
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk import Generator
from cvae_sdk.bench import machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import launch  # noqa: E402  (the load test beside this script starts servers the same way)

SERVER_FLAGS = ("--timeout", "0.02", "--max-delay-ms", "2", "--max-queue", "4096")
STORM_SAMPLES = (1, 2000)  # the smallest and largest request of a storm


def status(url: str, path: str) -> int:
    try:
        with urllib.request.urlopen(url + path, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def post(url: str, body: dict[str, Any], timeout: float = 10.0) -> tuple[int, bytes]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url + "/v1/generate", data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()
    except OSError:
        return 0, b""


def probe(url: str, seed: int) -> tuple[int, np.ndarray | None]:
    code, data = post(url, {"labels": [seed % 10], "seed": seed})
    return code, np.load(io.BytesIO(data)) if code == 200 else None


def storm(url: str, clients: int, seconds: float, seed: int) -> dict[str, int]:
    """``clients`` threads sending 1-2,000-sample requests back to back; counts of each status."""
    counts: dict[str, int] = {}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(i: int) -> None:
        rng = np.random.default_rng([seed, i])
        while time.monotonic() < end:
            n = int(rng.integers(STORM_SAMPLES[0], STORM_SAMPLES[1] + 1))
            code, _ = post(url, {"labels": [int(rng.integers(10))], "num_samples_per_label": n}, timeout=5)
            with lock:
                counts[str(code)] = counts.get(str(code), 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="artifact (default: the shipped model)")
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each storm")
    parser.add_argument("--watch", type=float, default=10.0, help="seconds watched after the storm")
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--server-flag", action="append", default=[], dest="extra",
                        help="a flag for `cvae-sdk serve` (repeatable; write --server-flag=--max-queued-samples)")
    parser.add_argument("--out", type=Path, default=None, help="append the JSON line to this file")
    args = parser.parse_args()

    gen = Generator.from_pretrained(args.model) if args.model else Generator.from_pretrained()
    server, url = launch(args.model, [*SERVER_FLAGS, *args.extra])
    try:
        before = sum(probe(url, s)[0] == 200 for s in range(args.probes))
        counts = storm(url, args.clients, args.seconds, seed=0)
        storm_end = time.monotonic()
        first_ok: float | None = None
        per_second: list[list[int]] = []
        equal, seed = True, 0
        while (elapsed := time.monotonic() - storm_end) < args.watch:
            code, got = probe(url, seed)
            while len(per_second) <= int(elapsed):
                per_second.append([0, 0])
            per_second[int(elapsed)][0] += 1
            if code == 200:
                per_second[int(elapsed)][1] += 1
                first_ok = elapsed if first_ok is None else first_ok
                equal &= bool(np.array_equal(got, gen.generate([seed % 10], 1, rng=seed).samples))
            seed += 1
        ready = status(url, "/readyz")
        storm(url, args.clients, min(args.seconds, 10.0), seed=1)
        server.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        server.wait(timeout=120)
        exit_s = time.monotonic() - sigterm_at
    finally:
        if server.poll() is None:
            server.kill()
    result = {"machine": machine(), "server_flags": " ".join([*SERVER_FLAGS, *args.extra]), "clients": args.clients,
              "request_samples": list(STORM_SAMPLES), "storm_seconds": args.seconds,
              "probes_before": args.probes, "answered_before": before,
              "storm_statuses": counts, "first_200_after_storm_s": None if first_ok is None else round(first_ok, 3),
              "answered_per_second_after": [ok / max(1, sent) for sent, ok in per_second],
              "answers_equal_generate": equal, "readyz_after": ready,
              "exit_after_sigterm_s": round(exit_s, 2), "exit_code": server.returncode}
    line = json.dumps(result)
    print(line)
    if args.out is not None:
        with args.out.open("a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
