"""A short training run with ``--device cuda`` and its export, on a synthetic set made here (the GPU
machine has no datasets): 4,000 28x28 images of 10 classes, each a bar at a class-specific height
with a random position and length. Writes the timings, the run's summary line and the exported
artifact's providers to one JSON file.

    python benchmarks/gpu_train.py OUT.json [--device cuda] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_set(path: Path, n: int = 4000, classes: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = (rng.random((n, 1, 28, 28)) * 30).astype(np.uint8)                 # (N, C, H, W)
    for i, label in enumerate(labels):
        row, left = 2 + 2 * label, rng.integers(0, 12)
        images[i, 0, row:row + 3, left:left + rng.integers(10, 16)] = rng.integers(160, 256)
    cut = n * 4 // 5
    np.savez(path, images=images[:cut], labels=labels[:cut], test_images=images[cut:], test_labels=labels[cut:])
    return path


def cli(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cvae-sdk {args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - started, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = synthetic_set(Path(folder) / "bars.npz")
        run, model = Path(folder) / "run", Path(folder) / "bars.onnx"
        train_s, summary = cli("train", "--data", str(data), "--out", str(run), "--device", args.device,
                               "--epochs", str(args.epochs), "--quiet")
        export_s, exported = cli("export", str(run), "--out", str(model))
        from cvae_sdk import Generator

        with Generator.from_pretrained(model, providers=["CUDAExecutionProvider"] if args.device == "cuda"
                                       else ["CPUExecutionProvider"]) as gen:
            samples = gen.generate(list(range(10)), 8, rng=0).samples
            providers = gen.providers
    report = {"benchmark": "gpu_train", "device": args.device, "epochs": args.epochs, "train_seconds": train_s,
              "export_seconds": export_s, "train_summary": json.loads(summary), "export": json.loads(exported),
              "sample_providers": providers, "sample_shape": list(samples.shape),
              "samples_finite": bool(np.isfinite(samples).all())}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
