"""README.md is the spec: its Python quickstart runs as written, and CI runs its test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_quickstart_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python block"
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path,
                              timeout=300)
        assert done.returncode == 0, block + done.stderr
        assert "[3, 3, 3, 3, 7, 7, 7, 7]" in done.stdout


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_cli_quickstart_writes_a_png(tmp_path: Path) -> None:
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    sample = next(c for c in commands if "cvae-sdk sample" in c).split("&&", 1)[1].split()
    assert sample[0] == "cvae-sdk"
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", *sample[1:]], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "samples.png").read_bytes()[:4] == b"\x89PNG"
