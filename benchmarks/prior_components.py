"""Prior components on fixed weights: how many Gaussians per label the aggregate-posterior prior needs.

The prior is fitted after training, so the trained weights do not depend on it. For each M this
refits the mixture of a trained run (``cvae-sdk train``) on its own train split, puts it into a copy
of the run's exported artifact (``cvae-sdk export``) and evaluates that copy at T = 1 with the
given classifier, exactly as ``cvae-sdk evaluate --temperature 1`` would. One JSON line per M:

    python benchmarks/prior_components.py RUN MODEL.onnx --data SET --classifier CLF.onnx \\
        --components 10 32 64 128 --set NAME --out benchmarks/results/prior_components.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from cvae_sdk_training.aggregate import fit_aggregate_prior
from cvae_sdk_training.export import load_model
from cvae_sdk_training.splits import split_validation

from cvae_sdk import Generator
from cvae_sdk.artifact import Prior, read_metadata, write_metadata
from cvae_sdk.data import load_dataset
from cvae_sdk.evaluate import EvalClassifier, evaluate_generator

KEYS = ("label_fidelity", "worst_class_fidelity", "frechet_ratio", "diversity_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("model", type=Path, help="the run's exported artifact (its decoder is reused)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--classifier", type=Path, required=True)
    parser.add_argument("--components", type=int, nargs="+", default=[10, 32, 64, 128])
    parser.add_argument("--set", required=True, help="the data set's name in the results")
    parser.add_argument("--out", type=Path, default=None, help="append the rows to this .jsonl")
    args = parser.parse_args()

    model, state = load_model(args.run)
    train_config = state["train_config"]
    dataset = load_dataset(args.data)
    train, _ = split_validation(dataset.train, train_config["val_fraction"], train_config["seed"])
    import torch

    x, y = torch.from_numpy(train.images), torch.from_numpy(train.labels.astype(np.int64))
    artifact = onnx.load(str(args.model))
    config = read_metadata(artifact, str(args.model))
    classifier = EvalClassifier.load(args.classifier)
    for m in args.components:
        started = time.perf_counter()
        fit = fit_aggregate_prior(model, x, y, m, train_config["seed"])
        fit_s = time.perf_counter() - started
        prior = Prior(fit["weights"].numpy(), fit["means"].numpy(), fit["scale_tril"].numpy(), "aggregate")
        write_metadata(artifact, replace(config, prior=prior))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "refit.onnx"
            onnx.save(artifact, str(path))
            size = path.stat().st_size
            gen = Generator.from_pretrained(path, providers=["CPUExecutionProvider"])
            report = evaluate_generator(gen, dataset.test, classifier, temperature=1.0)
        row = {"set": args.set, "components": m, "temperature": 1.0, "fit_seconds": round(fit_s, 1),
               "artifact_bytes": size, **{k: report[k] for k in KEYS}}
        print(json.dumps(row), flush=True)
        if args.out is not None:
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
