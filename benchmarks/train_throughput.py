"""Training throughput (samples/s) of both architectures on this machine, from real epochs.

    python benchmarks/train_throughput.py --data ../shared/data/mnist --epochs 3

Prints a table, then one JSON line; writes ``benchmarks/results/training_throughput.json``.
The first epoch is a warm-up; the figure is the median of the rest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from cvae_sdk_training.checkpoint import load_checkpoint
from cvae_sdk_training.trainer import train

from cvae_sdk import bench
from cvae_sdk.backends import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results" / "training_throughput.json"


def machine() -> dict[str, object]:
    return {**bench.machine(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mnist")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for arch in ("mlp", "conv"):
        with tempfile.TemporaryDirectory() as folder:
            config = TrainConfig(data=args.data, out=str(Path(folder) / arch), arch=arch, epochs=args.epochs,
                                 aggregate_components=0)
            result = train(config, progress=False)
            latent_dim = load_checkpoint(result.best_checkpoint)["model_config"]["latent_dim"]  # as the data sized it
        rates = [r["samples_per_s"] for r in result.history[1:]] or [result.history[0]["samples_per_s"]]
        rows.append({"arch": arch, "latent_dim": latent_dim, "batch_size": config.batch_size,
                     "samples_per_s": round(statistics.median(rates), 1),
                     "epoch_seconds": round(statistics.median(r["seconds"] for r in result.history[1:]), 2),
                     "train_images": int(result.history[0]["samples_per_s"] * result.history[0]["seconds"] + 0.5)})
    print(f"{'arch':<6}{'samples/s':>12}{'s/epoch':>10}")
    for row in rows:
        print(f"{row['arch']:<6}{row['samples_per_s']:>12.0f}{row['epoch_seconds']:>10.2f}")
    report = {"benchmark": "training_throughput", "machine": machine(), "results": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
