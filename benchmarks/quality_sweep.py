"""Quality sweep: train, export and evaluate CVAE variants through the real CLI.

Each variant is one training run; each of its exports (prior choice) is evaluated at several
temperatures. Results append to ``benchmarks/results/quality_sweep.jsonl``, one JSON line per
(variant, prior, temperature), with the training time, so ``benchmarks/quality.md`` can cite them.

    python benchmarks/quality_sweep.py --data ../shared/data/mnist --work /tmp/sweep mlp16-std mlp16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "quality_sweep.jsonl"
EPOCHS = "20"
VARIANTS: dict[str, dict[str, list[str]]] = {
    # name: training flags, and the priors to export from the same run
    "mlp16-std": {"train": ["--prior", "standard", "--aggregate-components", "0"], "priors": ["standard"]},
    "mlp16": {"train": [], "priors": ["learned", "aggregate"]},
    "mlp16-mix4": {"train": ["--aggregate-components", "4"], "priors": ["aggregate"]},
    "mlp8": {"train": ["--latent-dim", "8"], "priors": ["learned", "aggregate"]},
    "mlp32": {"train": ["--latent-dim", "32"], "priors": ["aggregate"]},
    "mlp16-warmup": {"train": ["--warmup-epochs", "5"], "priors": ["aggregate"]},
    "mlp16-beta2": {"train": ["--beta", "2"], "priors": ["aggregate"]},
    "conv16": {"train": ["--arch", "conv"], "priors": ["learned", "aggregate"]},
    "conv32": {"train": ["--arch", "conv", "--latent-dim", "32"], "priors": ["aggregate"]},
    "conv16-mix4": {"train": ["--arch", "conv", "--aggregate-components", "4"], "priors": ["aggregate"]},
    "conv16-40ep": {"train": ["--arch", "conv", "--epochs", "40"], "priors": ["aggregate"]},
    # "two-stage" variants: a smaller beta keeps more information in z (sharper decodes), and the
    # post-hoc mixture prior then covers the codes that the encoder actually uses
    "mlp16-b0.5-mix10": {"train": ["--beta", "0.5", "--aggregate-components", "10"], "priors": ["aggregate"]},
    "mlp32-b0.25-mix10": {"train": ["--latent-dim", "32", "--beta", "0.25", "--aggregate-components", "10"],
                          "priors": ["aggregate"]},
    "conv16-mix10": {"train": ["--arch", "conv", "--aggregate-components", "10"], "priors": ["aggregate"]},
    "conv16-b0.5-mix10": {"train": ["--arch", "conv", "--beta", "0.5", "--aggregate-components", "10"],
                          "priors": ["aggregate"]},
    "conv16-c16-b0.5-mix10": {"train": ["--arch", "conv", "--conv-channels", "16", "--beta", "0.5",
                                        "--aggregate-components", "10"], "priors": ["aggregate"]},
    "conv32-b0.25-mix10": {"train": ["--arch", "conv", "--latent-dim", "32", "--beta", "0.25",
                                     "--aggregate-components", "10"], "priors": ["aggregate"]},
}
TEMPERATURES = (0.8, 0.9, 1.0)


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cvae-sdk {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def run_variant(name: str, data: str, work: Path, classifier: str | None) -> None:
    spec = VARIANTS[name]
    run = work / name
    flags = ["--epochs", EPOCHS, *spec["train"]]
    started = time.perf_counter()
    if not (run / "best.pt").exists():
        cli("train", "--data", data, "--out", str(run), "--quiet", *flags)
    train_seconds = time.perf_counter() - started
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for prior in spec["priors"]:
        model = work / f"{name}-{prior}.onnx"
        cli("export", str(run), "--out", str(model), "--prior", prior)
        for temp in TEMPERATURES:
            extra = ["--classifier", classifier] if classifier else []
            report = json.loads(cli("evaluate", str(model), "--data", data, "--temperature", str(temp),
                                    "--quiet", *extra))
            row = {"variant": name, "train_flags": flags, "prior": prior, "temperature": temp,
                   "train_seconds": round(train_seconds, 1), "epochs": history[-1]["epoch"],
                   "val_elbo": history[-1]["val_elbo"], "active_units": history[-1]["active_units"],
                   **{k: report[k] for k in ("label_fidelity", "worst_class_fidelity", "frechet_distance",
                                             "frechet_floor", "frechet_ratio", "diversity_ratio",
                                             "classifier_test_accuracy")}}
            with RESULTS.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", default=list(VARIANTS), help=f"any of {list(VARIANTS)}")
    parser.add_argument("--data", default="../shared/data/mnist")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cvae-sweep"))
    parser.add_argument("--classifier", default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        run_variant(name, args.data, args.work, args.classifier)


if __name__ == "__main__":
    main()
