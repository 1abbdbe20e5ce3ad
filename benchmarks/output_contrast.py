"""The output contrast export chooses, against the decoder as trained, on one finished run.

Exports ``RUN`` twice, with ``--contrast 1`` (the decoder as trained) and with the default (the
contrast chosen with the run's classifier on its training images), and scores both with the same
independent classifier on the set's test split. The two artifacts have the same graph and FLOPs;
only the last layer's weights differ. Rows append to ``benchmarks/results/output_contrast.jsonl``
(table ``contrast`` in ``benchmarks/quality.md``).

    python benchmarks/output_contrast.py RUN --set mnist --data ../shared/data/mnist \
        --classifier exported/mnist-classifier.onnx
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "output_contrast.jsonl"
KEYS = ("label_fidelity", "worst_class_fidelity", "frechet_ratio", "diversity_ratio")


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cvae-sdk {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--set", required=True, help="the set's name in the results")
    parser.add_argument("--data", required=True, help="the data the run was trained on, with its test split")
    parser.add_argument("--classifier", required=True, help="an independent evaluation classifier")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for flags in (["--contrast", "1"], []):
            model = Path(folder) / "m.onnx"
            exported = json.loads(cli("export", str(args.run), "--out", str(model), *flags))
            report_path = Path(folder) / "eval.json"
            cli("evaluate", str(model), "--data", args.data, "--classifier", args.classifier, "--json",
                str(report_path), "--quiet")
            report = json.loads(report_path.read_text())
            row = {"set": args.set, "contrast": exported["output_contrast"], "chosen": not flags,
                   **{key: report[key] for key in KEYS}}
            with RESULTS.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
