"""Where the quality gap comes from: a default run's samples against its decoder's reconstructions.

For each set it trains with the defaults (``cvae-sdk train --data SET --out RUN``), then runs
``cvae-sdk evaluate RUN`` with the set's independent classifier (as ``own_data.py`` picks it): the
samples at the run's calibrated temperatures, and the reconstructions of real training images
(encoder mean, then decoder), scored by the same measures. When the reconstructions already sit
far above the real-vs-real floor, the decoder limits quality and no prior or temperature fixes it.
Rows append to ``benchmarks/results/decoder_gap.jsonl``. A finished run already in
``WORK/SET-gap-run`` (e.g. a link to ``own_data.py``'s ``WORK/SET-run``) is scored as it is, with no
train time.

    python benchmarks/decoder_gap.py mnist-3k glyphs --work /tmp/cvae-own-data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from own_data import SETS, build, cli  # noqa: E402  (the own-data benchmark's sets and classifiers)

RESULTS = Path(__file__).resolve().parent / "results" / "decoder_gap.jsonl"
KEYS = ("label_fidelity", "worst_class_fidelity", "frechet_ratio", "diversity_ratio")


def run(name: str, work: Path, mnist: str) -> dict[str, object]:
    data, classifier = build(name, work, mnist)
    run_dir, report_path = work / f"{name}-gap-run", work / f"{name}-gap-eval.json"
    train_s = None
    if not (run_dir / "best.pt").exists():
        _, train_s = cli("train", "--data", data, "--out", str(run_dir), "--quiet")
    cli("evaluate", str(run_dir), "--data", data, "--json", str(report_path), "--quiet", "--no-likelihood",
        *(["--classifier", classifier] if classifier else []))
    report = json.loads(report_path.read_text())
    recon = report["reconstruction"]
    return {"set": name, "train_seconds": None if train_s is None else round(train_s, 1),
            "reconstructed_images": recon["images"],
            "samples": {k: report[k] for k in KEYS}, "reconstructions": {k: recon[k] for k in KEYS},
            "frechet_floor": report["frechet_floor"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", choices=SETS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cvae-own-data"))
    parser.add_argument("--mnist", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        row = run(name, args.work, args.mnist)
        with RESULTS.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
