"""Data-parallel scaling: training samples/s at 1 and 2 processes (``cvae-sdk train --nproc``).

    python benchmarks/ddp_scaling.py --data ../shared/data/mnist --epochs 3

Three settings per architecture, same global batch and seed: one process on all cores, one process
on one core (the per-process baseline), and N processes with one core each (DDP over gloo on
127.0.0.1). The rate is rank 0's epoch wall time over the global epoch, median of the epochs after
the first. Prints a table, then one JSON line; writes ``benchmarks/results/ddp_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cvae_sdk import bench

RESULTS = Path(__file__).resolve().parent / "results" / "ddp_scaling.json"


def measure(data: str, arch: str, epochs: int, nproc: int, threads: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        command = [sys.executable, "-m", "cvae_sdk", "train", "--data", data, "--out", str(run), "--arch", arch,
                   "--epochs", str(epochs), "--aggregate-components", "0", "--nproc", str(nproc), "--quiet"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, check=True, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    timed = records[1:] or records
    return {"arch": arch, "processes": nproc, "threads_per_process": threads,
            "samples_per_s": round(statistics.median(r["samples_per_s"] for r in timed), 1),
            "final_train_loss": round(records[-1]["train_loss"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    for arch in ("mlp", "conv"):
        for nproc, threads in ((1, cores), (1, 1), (args.nproc, max(1, cores // args.nproc))):
            rows.append(measure(args.data, arch, args.epochs, nproc, threads))
            print(rows[-1], file=sys.stderr)
    print(f"{'arch':<6}{'processes':>10}{'threads':>9}{'samples/s':>12}{'final loss':>12}")
    for row in rows:
        print(f"{row['arch']:<6}{row['processes']:>10}{row['threads_per_process']:>9}"
              f"{row['samples_per_s']:>12.0f}{row['final_train_loss']:>12.3f}")
    report = {"benchmark": "ddp_scaling", "machine": bench.machine(), "backend": "gloo", "epochs": args.epochs,
              "global_batch": 128, "results": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
