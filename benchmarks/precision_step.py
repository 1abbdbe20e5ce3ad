"""The cost of one ELBO training step in bfloat16 mixed precision against float32, on this machine.

    python benchmarks/precision_step.py

For grey 28x28, colour 32x32 and colour 64x64 images it builds the default model (as ``train``
would for such data) and times whole optimiser steps (forward, backward, Adam) of a 128-image
batch, the two precisions interleaved so both see the same machine; the figure is the median step.
``bf16 / fp32`` is what ``BF16_STEP_COST`` in ``cvae_sdk/backends.py`` rests on. Writes
``benchmarks/results/precision_step.json``. Time it alone: another job on 2 cores skews both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from cvae_sdk_training.precision import autocast, native_bf16
from cvae_sdk_training.trainer import build_model

from cvae_sdk import bench
from cvae_sdk.backends import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results" / "precision_step.json"
SHAPES = ((1, 28, 28), (3, 32, 32), (3, 64, 64))
CLASSES, BATCH = 10, 128


def step_seconds(shape: tuple[int, int, int], repeats: int) -> dict[str, float]:
    """Median seconds of one step at each precision, the two interleaved."""
    config = TrainConfig(data="unused", out="unused")
    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((BATCH, *shape), generator=generator)                           # (B, C, H, W)
    y = torch.randint(0, CLASSES, (BATCH,), generator=generator)                   # (B,)
    runs = {}
    for precision in ("fp32", "bf16"):
        model = build_model(config, shape, CLASSES)
        runs[precision] = (model, torch.optim.Adam(model.parameters(), lr=config.lr), [])
    for _ in range(repeats + 1):  # the first step of each is a warm-up
        for precision, (model, optimizer, seconds) in runs.items():
            eps = torch.randn((BATCH, model.cfg.latent_dim), generator=generator)  # (B, D)
            started = time.perf_counter()
            with autocast(precision, cpu):
                terms = model(x, y, eps, config.beta)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            optimizer.step()
            seconds.append(time.perf_counter() - started)
    return {precision: statistics.median(seconds[1:]) for precision, (_, _, seconds) in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rows = []
    for shape in SHAPES:
        seconds = step_seconds(shape, args.repeats)
        rows.append({"image_shape": list(shape), "batch": BATCH, "fp32_ms": round(1e3 * seconds["fp32"], 2),
                     "bf16_ms": round(1e3 * seconds["bf16"], 2),
                     "bf16_over_fp32": round(seconds["bf16"] / seconds["fp32"], 3)})
        print(f"{'x'.join(map(str, shape)):<10}fp32 {rows[-1]['fp32_ms']:8.1f} ms  bf16 {rows[-1]['bf16_ms']:8.1f} ms"
              f"  ratio {rows[-1]['bf16_over_fp32']:.3f}")
    report = {"benchmark": "precision_step", "machine": {**bench.machine(), "torch": torch.__version__,
                                                         "torch_threads": torch.get_num_threads(),
                                                         "native_bf16": native_bf16(torch.device("cpu"))},
              "repeats": args.repeats, "results": rows}
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
