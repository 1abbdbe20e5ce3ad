"""Render ``benchmarks/results/quality_sweep.jsonl`` as the markdown table in ``benchmarks/quality.md``.

    python benchmarks/quality_table.py > /tmp/table.md
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "quality_sweep.jsonl"
TARGETS = {"label_fidelity": 0.99, "worst_class_fidelity": 0.97, "frechet_ratio": 3.0, "diversity_ratio": 0.9}


def mark(key: str, value: float) -> str:
    ok = value <= TARGETS[key] if key == "frechet_ratio" else value >= TARGETS[key]
    return f"**{value:.3f}**" if ok else f"{value:.3f}"


def main() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    print("| variant | training flags | prior | T | val ELBO | active units | fidelity | worst class "
          "| FD | FD / floor | diversity | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        flags = " ".join(r["train_flags"])
        print(f"| {r['variant']} | `{flags}` | {r['prior']} | {r['temperature']} | {r['val_elbo']:.1f} "
              f"| {r['active_units']} | {mark('label_fidelity', r['label_fidelity'])} "
              f"| {mark('worst_class_fidelity', r['worst_class_fidelity'])} | {r['frechet_distance']:.1f} "
              f"| {mark('frechet_ratio', r['frechet_ratio'])} | {mark('diversity_ratio', r['diversity_ratio'])} "
              f"| {r['train_seconds']:.0f} |")


if __name__ == "__main__":
    main()
