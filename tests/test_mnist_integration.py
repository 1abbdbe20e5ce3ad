"""Real MNIST (../shared/data/mnist): the validation ELBO falls over two epochs of the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_validation_elbo_falls_on_mnist(mnist_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", "train", "--data", str(mnist_dir), "--out", str(run),
                           "--epochs", "2", "--adversarial-epochs", "0", "--quiet"],  # the phase: test_adversarial
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    assert records[1]["val_elbo"] > records[0]["val_elbo"]  # ELBO rises, i.e. -ELBO falls
    assert -200 < records[1]["val_elbo"] < -80              # nats per image: a sane MNIST range
    assert records[1]["active_units"] >= 4
