"""Nothing is lost: kill -9 and Ctrl-C during real training subprocesses, then --resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_images
from cvae_sdk_training.checkpoint import load_checkpoint

TRAIN_ARGS = ["--latent-dim", "4", "--hidden", "64", "--batch-size", "16", "--epochs", "3",
              "--aggregate-components", "0", "--adversarial-epochs", "0", "--quiet"]


@pytest.fixture(scope="module")
def medium_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough images that an epoch takes a few seconds, so a signal lands mid-epoch."""
    path = tmp_path_factory.mktemp("medium") / "medium.npz"
    images, labels = make_images(6000, (1, 12, 12), 3, 0)
    np.savez(path, images=images, labels=labels)
    return path


def _start(data: Path, run: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cvae_sdk", "train", "--data", str(data), "--out", str(run),
                             *TRAIN_ARGS, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _resume(data: Path, run: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", "train", "--data", str(data), "--out", str(run),
                           *TRAIN_ARGS, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(medium_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    done = _start(medium_npz, run)
    assert done.wait(timeout=600) == 0, done.communicate()
    return run


@pytest.mark.slow
def test_kill_9_leaves_a_loadable_checkpoint_and_resume_finishes(medium_npz: Path, reference: Path,
                                                                 tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = _start(medium_npz, run)
    _wait_for(run / "last.pt", process)
    time.sleep(0.5)  # somewhere inside the second epoch, possibly mid-write of a checkpoint
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] >= 1
    _resume(medium_npz, run)
    assert _losses(run) == _losses(reference)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # a killed write's temp file is swept


@pytest.mark.slow
def test_ctrl_c_saves_mid_epoch_and_resume_is_exact(medium_npz: Path, reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = _start(medium_npz, run)
    _wait_for(run / "metrics.jsonl", process)  # the first epoch is done; interrupt the second one
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "checkpoint was saved" in stderr and "Traceback" not in stderr
    state = load_checkpoint(run / "last.pt")
    assert state["partial"] is not None and state["partial"]["step"] > 0
    _resume(medium_npz, run)
    assert _losses(run) == _losses(reference)
    final, want = load_checkpoint(run / "last.pt")["model"], load_checkpoint(reference / "last.pt")["model"]
    assert all(torch.equal(final[k], want[k]) for k in want)


def test_ctrl_c_outside_training_does_not_promise_a_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cvae_sdk import bench
    from cvae_sdk.cli import app

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_benchmark", interrupted)
    result = CliRunner().invoke(app, ["bench", "--engine", "sdk-fp32"])
    assert result.exit_code == 130
    assert result.output.strip().splitlines()[-1] == "interrupted"
