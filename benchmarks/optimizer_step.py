"""The cost of Adam's update in a float32 training step: PyTorch's default per-parameter loop against its
fused kernel (``training/precision.py``: ``adam``), on this machine.

    python benchmarks/optimizer_step.py

For grey 28x28, colour 32x32 and colour 64x64 images it builds the default model (as ``train``
would for such data) and times, the two optimisers interleaved so both see the same machine, the update
alone (``optimizer.step()`` on fixed gradients) and whole steps (forward, backward, update) of a
128-image batch; each figure is a median. Writes ``benchmarks/results/optimizer_step.json``. Time it
alone: another job on 2 cores skews both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from cvae_sdk_training.trainer import build_model

from cvae_sdk import bench
from cvae_sdk.backends import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results" / "optimizer_step.json"
SHAPES = ((1, 28, 28), (3, 32, 32), (3, 64, 64))
CLASSES, BATCH = 10, 128
KINDS = {"default": {}, "fused": {"fused": True}}


def interleaved(calls: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each call, the calls taking turns; the first round is a warm-up."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats + 1):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(times[1:]) for name, times in seconds.items()}


def measure(shape: tuple[int, int, int], repeats: int) -> dict[str, object]:
    config = TrainConfig(data="unused", out="unused")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((BATCH, *shape), generator=generator)                           # (B, C, H, W)
    y = torch.randint(0, CLASSES, (BATCH,), generator=generator)                   # (B,)
    models = {kind: build_model(config, shape, CLASSES) for kind in KINDS}
    optimizers = {kind: torch.optim.Adam(models[kind].parameters(), lr=config.lr, **options)
                  for kind, options in KINDS.items()}

    def step(kind: str) -> Callable[[], None]:
        def call() -> None:
            model = models[kind]
            eps = torch.randn((BATCH, model.cfg.latent_dim), generator=generator)  # (B, D)
            terms = model(x, y, eps, config.beta)
            optimizers[kind].zero_grad(set_to_none=True)
            terms.loss.backward()
            optimizers[kind].step()
        return call

    steps = interleaved({kind: step(kind) for kind in KINDS}, repeats)
    updates = interleaved({kind: optimizers[kind].step for kind in KINDS}, 5 * repeats)  # gradients of the last step
    row: dict[str, object] = {"image_shape": list(shape), "batch": BATCH,
                              "parameters": sum(p.numel() for p in models["default"].parameters())}
    for kind in KINDS:
        row[f"{kind}_update_ms"] = round(1e3 * updates[kind], 2)
        row[f"{kind}_step_ms"] = round(1e3 * steps[kind], 2)
    row["update_saved_share_of_step"] = round((updates["default"] - updates["fused"]) / steps["default"], 3)
    row["fused_over_default_step"] = round(steps["fused"] / steps["default"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rows = []
    for shape in SHAPES:
        rows.append(measure(shape, args.repeats))
        print(json.dumps(rows[-1]))
    report = {"benchmark": "optimizer_step", "machine": {**bench.machine(), "torch": torch.__version__,
                                                         "torch_threads": torch.get_num_threads()},
              "repeats": args.repeats, "results": rows}
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
