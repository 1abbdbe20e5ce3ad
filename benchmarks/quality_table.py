"""Render the recorded quality results as the markdown tables in ``benchmarks/quality.md``.

    python benchmarks/quality_table.py sweep      # results/quality_sweep.jsonl
    python benchmarks/quality_table.py own-data   # results/own_data.jsonl (a test keeps quality.md in step)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "quality_sweep.jsonl"
OWN_DATA = Path(__file__).resolve().parent / "results" / "own_data.jsonl"
TARGETS = {"label_fidelity": 0.99, "worst_class_fidelity": 0.97, "frechet_ratio": 3.0, "diversity_ratio": 0.9}
# the own-data targets: MNIST as shipped, every other set by the ratios of the unseen set
OWN_TARGETS = {"mnist": {"label_fidelity": 0.99, "worst_class_fidelity": 0.98, "frechet_ratio": 2.0,
                         "diversity_ratio": 0.9},
               "other": {"label_fidelity": 0.95, "worst_class_fidelity": 0.90, "frechet_ratio": 3.0,
                         "diversity_ratio": 0.85}}


def mark(key: str, value: float, targets: dict[str, float] = TARGETS) -> str:
    ok = value <= targets[key] if key == "frechet_ratio" else value >= targets[key]
    return f"**{value:.3f}**" if ok else f"{value:.3f}"


def own_data_table() -> str:
    """One row per set: the two default commands, timed, scored by an independent classifier."""
    rows = [json.loads(line) for line in OWN_DATA.read_text().splitlines() if line.strip()]
    lines = ["| set | train images | epochs run (best) | train + export s | fidelity | worst class | FD / floor "
             "| diversity | temperatures |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        t = OWN_TARGETS["mnist" if r["set"] == "mnist" else "other"]
        temps = r["class_temperatures"] or {}
        spread = f"{min(temps.values()):.2f}-{max(temps.values()):.2f}" if temps else "-"
        scores = " | ".join(mark(key, r[key], t) for key in t)
        lines.append(f"| {r['set']} | {r['train_images']:,} | {r['epochs_run']} ({r['best_epoch']}) "
                     f"| {r['train_seconds'] + r['export_seconds']:.0f} | {scores} | {spread} |")
    return "\n".join(lines)


def decoder_table() -> str:
    """Quality (glyphs, T = 0.9) beside sampling cost, per decoder: results/decoder_choice.jsonl and the bench runs."""
    folder = Path(__file__).resolve().parent / "results"
    rows = [json.loads(line) for line in (folder / "decoder_choice.jsonl").read_text().splitlines() if line.strip()]
    lines = ["| decoder | MFLOP/sample | samples/s, batch 4096 | fidelity | worst class | FD / floor | diversity |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in (r for r in rows if r["temperature"] == 0.9):
        bench = json.loads((folder / f"decoder-choice-{'conv' if r['arch'] == 'conv' else 'dense1024'}"
                            / "bench.json").read_text())
        rate = next(b["samples_per_s"] for b in bench["rows"] if b["engine"] == "sdk-fp32" and b["batch"] == 4096)
        t = OWN_TARGETS["other"]
        scores = " | ".join(mark(key, r[key], t) for key in t)
        lines.append(f"| {r['arch']} | {bench['flops_per_sample'] / 1e6:.2f} | {rate:,.0f} | {scores} |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:] == ["own-data"]:
        print(own_data_table())
        return
    if sys.argv[1:] == ["decoder"]:
        print(decoder_table())
        return
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
