"""How far the judge moves the scores: one artifact's samples scored by several evaluation classifiers.

Every quality number here is read through one classifier's features and decisions. This script
draws an artifact's samples once (as ``cvae-sdk evaluate`` does: 1,000 per label at its own
temperatures, seed 0), optionally at other output contrasts (each pixel's logit times the factor,
as export's contrast would draw them; ``cvae_sdk.quality.with_contrast``), and scores the same
images with each classifier given, against the set's test split. Rows append to
``benchmarks/results/judge_spread.jsonl``.

    python benchmarks/judge_spread.py MODEL.onnx --set photos64 --data SET.npz \
        --classifier seed1=A.onnx --classifier seed2=B.onnx [--contrast 1.0 --contrast 1.05 ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cvae_sdk.data import open_dataset
from cvae_sdk.generator import Generator
from cvae_sdk.quality import EvalClassifier, score_images, with_contrast

RESULTS = Path(__file__).resolve().parent / "results" / "judge_spread.jsonl"
KEYS = ("classifier_test_accuracy", "label_fidelity", "worst_class_fidelity", "frechet_ratio", "diversity_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", required=True, help="the set's name in the results")
    parser.add_argument("--data", required=True, help="the set, with its test split")
    parser.add_argument("--classifier", action="append", required=True, metavar="NAME=PATH",
                        help="an evaluation classifier and the name its rows carry (repeat)")
    parser.add_argument("--contrast", action="append", type=float, default=None,
                        help="a factor on the artifact's own contrast (repeat; default 1)")
    args = parser.parse_args()
    gen = Generator.from_pretrained(args.model, providers=["CPUExecutionProvider"])
    test = open_dataset(args.data).test
    if test is None:
        parser.error(f"{args.data} has no test split")
    names = list(gen.config.class_names)
    out = gen.generate(list(range(len(names))), 1000, rng=0)                  # (K * 1000, C, H, W)
    with RESULTS.open("a") as results:
        for spec in args.classifier:
            name, _, path = spec.partition("=")
            path = path or name  # a bare PATH names its own rows
            classifier = EvalClassifier.load(path)
            for contrast in args.contrast or [1.0]:
                report = score_images(with_contrast(out.samples, contrast), out.labels, test, classifier, names)
                worst = min(report["per_class"], key=lambda r: r["fidelity"])["class"]
                row = {"set": args.set, "model": str(args.model), "classifier": name, "classifier_path": path,
                       "contrast_factor": contrast, **{k: report[k] for k in KEYS}, "worst_class": worst}
                results.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
