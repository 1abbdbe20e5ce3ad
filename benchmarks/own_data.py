"""The own-data benchmark: the two recommended commands, with no flag, on sets nobody tuned for.

For each set it runs exactly

    cvae-sdk train --data SET --out RUN && cvae-sdk export RUN --out MODEL.onnx

timing both, then scores the artifact at its own (calibrated) temperatures with an independent
evaluation classifier: one trained by ``cvae-sdk classifier`` with another seed (or the shipped one
for MNIST-based sets), never the run's own. Sets are built on the machine by
``benchmarks/harder_sets.py``; nothing is committed as data (``photos`` crops the photographs inside
scikit-image, ``pip install scikit-image`` first; ``photos64`` is the same at 64x64). An export refused for low label
fidelity is recorded (``export_refused``), then the run is exported with ``--allow-low-fidelity``
and scored anyway. Rows append to ``benchmarks/results/own_data.jsonl``; ``python
benchmarks/doc_tables.py own-data`` renders them.

``--train-flag`` adds a flag to ``train`` (repeat it; write ``--train-flag=--beta``): such a run is
a variant, not the defaults, and its row goes to ``results/own_data_variants.jsonl`` with its flags.

    python benchmarks/own_data.py glyphs mnist-3k scenes photos --work /tmp/own-data
    python benchmarks/own_data.py mnist-3k --train-flag=--beta --train-flag=1.0
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harder_sets  # noqa: E402  (the set builders beside this script)

from cvae_sdk.generator import shipped_file  # noqa: E402
from cvae_sdk.quality import SHIPPED_CLASSIFIER  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "own_data.jsonl"
VARIANTS = RESULTS.with_name("own_data_variants.jsonl")
SETS = ("glyphs", "mnist-3k", "mnist", "scenes", "photos", "photos64")
CLASSIFIER_SEED = "1"  # the run's own classifier uses the training seed (0): this one differs


def cli(*args: str, launcher: tuple[str, ...] = ("-m", "cvae_sdk")) -> tuple[str, float]:
    """Run ``cvae-sdk ARGS`` in a fresh Python (started with ``launcher``); its last output line and seconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cvae-sdk {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1], time.perf_counter() - started


def build(name: str, work: Path, mnist: str) -> tuple[str, str | None]:
    """The data argument for the set, and an independent classifier (None: the shipped one matches)."""
    if name == "mnist":
        return mnist, None
    path = work / f"{name}.npz"
    if not path.exists():
        arrays = harder_sets.build("photos", mnist, size=64) if name == "photos64" else harder_sets.build(name, mnist)
        import numpy as np

        np.savez_compressed(path, **arrays)
    if name == "mnist-3k":
        return str(path), None  # same test split as MNIST: the shipped classifier is independent of the run
    classifier = work / f"{name}-classifier.onnx"
    if not classifier.exists():
        cli("classifier", "--data", str(path), "--out", str(classifier), "--seed", CLASSIFIER_SEED, "--quiet")
    return str(path), str(classifier)


def run(name: str, work: Path, mnist: str, flags: list[str]) -> dict[str, object]:
    data, classifier = build(name, work, mnist)
    tag = name + "".join(f"_{f.strip('-')}" for f in flags)
    run_dir, model = work / f"{tag}-run", work / f"{tag}.onnx"
    _, train_s = cli("train", "--data", data, "--out", str(run_dir), "--quiet", *flags)
    try:
        exported, export_s = cli("export", str(run_dir), "--out", str(model))
        refused = None
    except RuntimeError as err:  # export's low-fidelity refusal: recorded, then the model is scored anyway
        if "--allow-low-fidelity" not in str(err):
            raise
        refused = str(err).strip().splitlines()[-1]
        exported, export_s = cli("export", str(run_dir), "--out", str(model), "--allow-low-fidelity")
    report_path = work / f"{tag}-eval.json"
    # named explicitly: with no flag, evaluate would take the run's own classifier, which judged its training
    cli("evaluate", str(model), "--data", data, "--json", str(report_path), "--quiet",
        "--classifier", classifier or str(shipped_file(SHIPPED_CLASSIFIER)))
    report = json.loads(report_path.read_text())
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda r: r["val_elbo"])
    from cvae_sdk.data import load_dataset

    variant = {"train_flags": " ".join(flags)} if flags else {}
    import torch

    phase = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True).get("adversarial")
    if phase is not None:  # the adversarial phase's part of the train time, and its epochs
        variant.update(adversarial_epochs=phase["epochs"], adversarial_seconds=round(phase["seconds"], 1),
                       adversarial_planned_epochs=phase["planned_epochs"],
                       adversarial_time_limited=phase.get("time_limited", False))
    plans = [r.get("planned_epochs") for r in history]
    if plans[-1] is not None and plans[-1] != plans[0]:  # the time limit cut the plan (training/clock.py)
        variant.update(planned_epochs=plans[0], epochs_after_cut=plans[-1])
    return {"set": name, **variant, "train_images": len(load_dataset(data).train), "train_seconds": round(train_s, 1),
            "export_seconds": round(export_s, 1), **({"export_refused": refused} if refused else {}),
            "epochs_run": len(history), "best_epoch": best["epoch"],
            "median_epoch_seconds": round(statistics.median(r["seconds"] for r in history), 2),  # ELBO epochs
            "val_elbo": best["val_elbo"], "class_temperatures": json.loads(exported).get("class_temperatures"),
            "independent_classifier": classifier or "shipped mnist-classifier.onnx",
            **{k: report[k] for k in ("classifier_test_accuracy", "label_fidelity", "worst_class_fidelity",
                                      "frechet_distance", "frechet_floor", "frechet_ratio", "diversity_ratio")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="*", default=list(SETS), choices=SETS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cvae-own-data"))
    parser.add_argument("--train-flag", action="append", default=[], dest="flags",
                        help="a flag for `cvae-sdk train` (repeatable): the row is a variant, not the defaults")
    parser.add_argument("--mnist", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        row = run(name, args.work, args.mnist, args.flags)
        with (VARIANTS if args.flags else RESULTS).open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
