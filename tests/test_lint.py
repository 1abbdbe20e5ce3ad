"""Lint (ruff), types (mypy strict on the runtime and the training package) and the modules' doctests
run as part of the test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("package", ["cvae_sdk", "training"])
def test_mypy_is_clean(package: str) -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", package], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
