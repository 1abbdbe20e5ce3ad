"""What a run records of each epoch: its line in ``metrics.jsonl`` (appended each epoch, read back
on resume up to a line a kill cut short, rewritten atomically), its console line, and its alarms."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cvae_sdk.atomic import atomic_path

METRICS_FILE = "metrics.jsonl"
IGNORED_LABEL_FIDELITY = 0.5  # below this, samples of different labels are hard to tell apart
WARMUP_BEFORE_ALARMS = 3      # epochs before the collapse and ignored-label warnings may fire
ALARM_PHASE = 0.25            # and the share of the planned epochs a run may spend still learning to use its labels


def alarm_from(total_epochs: int) -> int:
    """The first epoch whose alarms are raised: a run is still learning during its first ALARM_PHASE."""
    return max(WARMUP_BEFORE_ALARMS, math.ceil(ALARM_PHASE * total_epochs))


def summary_line(record: dict[str, Any], total: int, latent_dim: int, improved: bool, left_s: float) -> str:
    """One console line per epoch; ``left_s`` is the time of every planned epoch left and the adversarial
    phase's (early stopping may end sooner), shown while there is some."""
    fidelity = record.get("label_fidelity")
    left = f"  at most {_duration(left_s)} left" if left_s > 0 else ""
    return (f"epoch {record['epoch']}/{total}  val ELBO {record['val_elbo']:.2f}  "
            f"active units {record['active_units']}/{latent_dim}  label fidelity "
            f"{'-' if fidelity is None else f'{fidelity:.3f}'}  {record['seconds']:.1f} s"
            f"{'  (best so far)' if improved else ''}{left}")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def alarms(record: dict[str, Any], latent_dim: int) -> dict[str, str]:
    """What is wrong with a run at this epoch, by kind, each with one fix to try; empty when healthy.

    The fixes never pull one setting two ways (a collapse asks for a lower β, so an ignored label
    asks for a smaller latent, not a larger β)."""
    epoch, found = record["epoch"], {}
    if record["active_units"] == 0:
        found["collapse"] = (f"posterior collapse at epoch {epoch}: no active latent units of {latent_dim}; "
                             "lower --beta or add --warmup-epochs")
    fidelity = record.get("label_fidelity")
    if fidelity is None:
        return found
    if fidelity < IGNORED_LABEL_FIDELITY:
        found["ignored_label"] = (f"the label is being ignored at epoch {epoch}: the classifier recognises the "
                                  f"requested label in only {fidelity:.0%} of prior samples; try a smaller "
                                  "--latent-dim, or more --epochs")
    elif record["worst_class_fidelity"] < IGNORED_LABEL_FIDELITY * record["worst_class_real_accuracy"]:
        found["class_not_drawn"] = (f"class {record['worst_class']!r} is not being drawn at epoch {epoch}: the "
                                    f"classifier recognises it in only {record['worst_class_fidelity']:.0%} of its "
                                    f"prior samples (and {record['worst_class_real_accuracy']:.0%} of its real "
                                    f"images), most often seeing {record['worst_class_drawn_as']!r}; train longer, "
                                    "or check that class's images and labels")
    return found


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            break
    return records


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    with atomic_path(run_dir / METRICS_FILE) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))


def append_metric(run_dir: Path, record: dict[str, Any]) -> None:
    with (run_dir / METRICS_FILE).open("a") as handle:
        handle.write(json.dumps(record) + "\n")

