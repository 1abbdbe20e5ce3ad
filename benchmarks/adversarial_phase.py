"""The adversarial phase on a finished run: how much sharper its samples and reconstructions get.

Copies a finished run, sets the adversarial phase in its saved config (``--epochs`` phase epochs,
``--gan-weight``) and runs ``cvae-sdk train --resume`` on the copy, which runs only the phase
(training/adversarial.py), as a default run ends. With ``--set NAME`` (a set of ``own_data.py``) it
then runs ``cvae-sdk evaluate`` on the copy with that set's independent classifier and appends the
scores of its samples and its reconstructions to ``benchmarks/results/adversarial_phase.jsonl``
(``benchmarks/decoder_gap.py`` records the same scores for the run before the phase). A
``--gan-weight`` near 0 is the control: the decoder fine-tuned on its reconstructions alone.
``--constant NAME=VALUE`` sets a numeric or true/false (1 or 0) constant of ``training/adversarial.py``
for this run only, e.g. ``MODE_SEEKING=0.1`` (the mode-seeking term, off in the defaults),
``MAX_ADAPTIVE_WEIGHT=1e5``, ``SEED_OFFSET=16`` (another random stream for the phase, to see how far two
runs of it spread) or ``PRIOR_FAKES=1``.

    python benchmarks/adversarial_phase.py RUN --out RUN-adv [--epochs 3] [--gan-weight 1.0]
        [--constant MODE_SEEKING=0.1 ...] [--set NAME]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from cvae_sdk_training.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from own_data import build, cli  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "adversarial_phase.jsonl"
# The command line, after setting the phase's constants named in its first argument (a JSON object)
WITH_CONSTANTS = ("import json, sys, cvae_sdk_training.adversarial as phase; "
                  "[setattr(phase, k, v) for k, v in json.loads(sys.argv.pop(1)).items()]; "
                  "from cvae_sdk.cli import main; main()")
KEYS = ("label_fidelity", "worst_class_fidelity", "frechet_ratio", "diversity_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=None, help="phase epochs (default: as train plans them)")
    parser.add_argument("--gan-weight", type=float, default=1.0)
    parser.add_argument("--constant", action="append", default=[], type=constant, metavar="NAME=VALUE",
                        help="a numeric constant of training/adversarial.py for this run (repeatable)")
    parser.add_argument("--set", default=None, help="evaluate and record as this own-data set")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cvae-own-data"))
    parser.add_argument("--mnist", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))
    args = parser.parse_args()
    if "adversarial" in load_checkpoint(args.run / BEST):
        parser.error(f"{args.run}'s decoder has been through the phase already: start from a run trained with "
                     "--adversarial-epochs 0")
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.run, args.out)
    for name in (LAST, BEST):  # the copy's config asks for the phase; its other settings stay the run's
        state = load_checkpoint(args.out / name)
        state["train_config"] = {**state["train_config"], "out": str(args.out), "adversarial_epochs": args.epochs,
                                 "adversarial_weight": args.gan_weight}
        state.pop("adversarial", None)
        state.pop("format")
        save_checkpoint(state, args.out / name)
    cli("train", "--out", str(args.out), "--data", "unused", "--resume", "--quiet",
        launcher=("-c", WITH_CONSTANTS, json.dumps(dict(args.constant))))  # the constants set where the phase runs
    phase = torch.load(args.out / BEST, map_location="cpu", weights_only=True)["adversarial"]
    print(json.dumps({"run": str(args.out), "epochs": phase["epochs"], "seconds": phase["seconds"],
                      "stopped": phase["stopped"]}), flush=True)
    if args.set is not None:
        record(args, phase)


def constant(text: str) -> tuple[str, float]:
    """``NAME=VALUE`` for a numeric or true/false constant that training/adversarial.py defines."""
    from cvae_sdk_training import adversarial

    name, _, value = text.partition("=")
    current = getattr(adversarial, name, None)
    if not isinstance(current, (int, float)):
        raise argparse.ArgumentTypeError(f"{name!r} is not a numeric or true/false constant of "
                                         "training/adversarial.py")
    if isinstance(current, bool):
        if value.lower() not in ("0", "1", "true", "false"):
            raise argparse.ArgumentTypeError(f"{text!r}: the value must be 0, 1, true or false")
        return name, value.lower() in ("1", "true")
    try:
        return name, type(current)(float(value))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the value must be a number") from err


def record(args: argparse.Namespace, phase: dict[str, object]) -> None:
    """Evaluate the new run as `own_data.py` scores a set, and append the row."""
    data, classifier = build(args.set, args.work, args.mnist)
    report_path = args.out / "adversarial-eval.json"
    cli("evaluate", str(args.out), "--data", data, "--json", str(report_path), "--quiet", "--no-likelihood",
        *(["--classifier", classifier] if classifier else []))
    report = json.loads(report_path.read_text())
    row = {"set": args.set, "via": "train --resume", "loss": phase["loss"], "fakes": phase["fakes"],
           "epochs": phase["epochs"],
           "gan_weight": args.gan_weight, "constants": dict(args.constant),
           "stopped": phase["stopped"], "phase_seconds": round(float(phase["seconds"]), 1),  # type: ignore[arg-type]
           "samples": {k: report[k] for k in KEYS}, "reconstructions": {k: report["reconstruction"][k] for k in KEYS}}
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
