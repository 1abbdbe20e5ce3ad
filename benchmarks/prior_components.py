"""Prior components on fixed weights: how many Gaussians per label the aggregate-posterior prior needs.

The prior is fitted after training, so the trained weights do not depend on it. For each M this
refits the mixture of a trained run (``cvae-sdk train``) on its own train split, puts it into a copy
of the run's exported artifact (``cvae-sdk export``) and evaluates that copy at T = 1 with the
given classifier, exactly as ``cvae-sdk evaluate --temperature 1`` would. One JSON line per M.
``codes`` in place of M is the default prior, the aggregate posterior itself (one Gaussian per
training image), recorded twice: with every code, and with the codes export drops where the run's
classifier misreads them (``prune_misread``, judged on the artifact's own decoder).
``--bounds FILE`` also records what no prior can change, as FD / floor against the test split: the
real training images themselves, and the decoder's reconstructions of the test images (z = the
posterior mean):

    python benchmarks/prior_components.py RUN MODEL.onnx --data SET --classifier CLF.onnx \\
        --components 10 32 64 128 codes --set NAME --out benchmarks/results/prior_components.jsonl \\
        [--bounds benchmarks/results/frechet_bounds.jsonl]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from cvae_sdk_training.aggregate import aggregate_posterior, fit_aggregate_prior
from cvae_sdk_training.calibrate import prune_misread
from cvae_sdk_training.export import load_model, prior_from_fit
from cvae_sdk_training.splits import split_validation

from cvae_sdk import Generator
from cvae_sdk.artifact import INPUT_Y, INPUT_Z, OUTPUT, read_metadata, write_metadata
from cvae_sdk.backends import CODE_BUDGET
from cvae_sdk.data import LabeledImages, load_dataset
from cvae_sdk.quality import EvalClassifier, evaluate_generator, frechet_distance, real_halves

KEYS = ("label_fidelity", "worst_class_fidelity", "frechet_ratio", "diversity_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("model", type=Path, help="the run's exported artifact (its decoder is reused)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--classifier", type=Path, required=True)
    parser.add_argument("--components", nargs="*", default=["10", "32", "64", "128", "codes"],
                        help="Gaussians per label to fit, or codes (one per training image)")
    parser.add_argument("--set", required=True, help="the data set's name in the results")
    parser.add_argument("--out", type=Path, default=None, help="append the rows to this .jsonl")
    parser.add_argument("--bounds", type=Path, default=None, help="append the two bounds to this .jsonl")
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
    if args.bounds is not None:
        _append(args.bounds, bounds(model, train, dataset.test, classifier, dataset.num_classes, args.set))
    for m in args.components:
        started = time.perf_counter()
        if m == "codes":
            fit = aggregate_posterior(model, x, y, CODE_BUDGET, train_config["seed"])
        else:
            fit = fit_aggregate_prior(model, x, y, int(m), train_config["seed"])
        fit_s = time.perf_counter() - started
        priors = {m: prior_from_fit(fit)}
        if m == "codes":
            decode = artifact_decoder(args.model)
            run_classifier = EvalClassifier.load(args.run / "classifier.onnx")
            priors["codes, misread dropped"], _ = prune_misread(decode, priors[m], run_classifier,
                                                                seed=train_config["seed"])
        for name, prior in priors.items():
            write_metadata(artifact, replace(config, prior=prior))
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "refit.onnx"
                onnx.save(artifact, str(path))
                size = path.stat().st_size
                gen = Generator.from_pretrained(path, providers=["CPUExecutionProvider"])
                report = evaluate_generator(gen, dataset.test, classifier, temperature=1.0)
            row = {"set": args.set, "components": int(m) if m.isdigit() else name, "temperature": 1.0,
                   "fit_seconds": round(fit_s, 1), "artifact_bytes": size, **{k: report[k] for k in KEYS}}
            _append(args.out, [row])


def artifact_decoder(model: Path) -> Any:
    """z (N, D), one-hot y (N, K) -> images, through the artifact's own graph on onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return lambda z, y: session.run([OUTPUT], {INPUT_Z: z.astype(np.float32), INPUT_Y: y.astype(np.float32)})[0]


def bounds(model: Any, train: LabeledImages, test: LabeledImages, classifier: EvalClassifier,
           num_classes: int, name: str) -> list[dict[str, Any]]:
    """FD / floor of the real training images, and of the test images' reconstructions, against the test split."""
    import torch

    with torch.no_grad():
        y = torch.from_numpy(test.labels.astype(np.int64))
        mean, _ = model.encode(torch.from_numpy(test.images), y)
        reconstructions = model.decode(mean, y).numpy()
    _, real = classifier.predict(test.images)
    halves = real_halves(len(test), seed=0)  # evaluate_generator's floor at its default seed
    classes = range(num_classes)
    floor = np.mean([frechet_distance(real[(test.labels == c) & (halves == 0)],
                                      real[(test.labels == c) & (halves == 1)]) for c in classes])

    def ratio(images: np.ndarray, labels: np.ndarray) -> float:
        _, feats = classifier.predict(images)
        return float(np.mean([frechet_distance(feats[labels == c], real[test.labels == c]) for c in classes]) / floor)

    return [{"set": name, "bound": "real training images", "frechet_ratio": ratio(train.images, train.labels)},
            {"set": name, "bound": "test reconstructions", "frechet_ratio": ratio(reconstructions, test.labels)}]


def _append(path: Path | None, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(json.dumps(row), flush=True)
    if path is not None:
        with path.open("a") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
