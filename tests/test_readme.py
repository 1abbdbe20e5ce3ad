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


def test_shard_recipe_concatenates_to_the_single_run(tmp_path: Path) -> None:
    """The README's fan-out recipe, run as written with a small --n and N=3 shards."""
    import numpy as np

    recipe = next(c for c in re.findall(r"```bash\n(.*?)\n```", README, flags=re.S) if "--shard" in c)
    script = recipe.replace("--n 1000000", "--n 5").replace("N=100", "N=3")
    assert "--n 5" in script and "N=3" in script
    bin_dir = Path(sys.executable).parent  # the cvae-sdk script of this environment
    env_path = f"{bin_dir}:/usr/bin:/bin"
    for k in range(3):
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                              env={"PATH": env_path, "SLURM_ARRAY_TASK_ID": str(k), "HOME": str(tmp_path)})
        assert done.returncode == 0, done.stderr
    whole = tmp_path / "whole.npy"
    command = next(line for line in script.replace("\\\n", " ").splitlines() if line.startswith("cvae-sdk sample"))
    words = command.split()
    shard_at = words.index("--shard")
    single = words[:shard_at] + words[shard_at + 2:]
    single = single[:single.index("--out")] + ["--out", str(whole)]  # --out comes last
    done = subprocess.run([sys.executable, "-m", "cvae_sdk", *single[1:]], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    parts = np.concatenate([np.load(tmp_path / f"part-{k:03d}.npy", mmap_mode="r") for k in range(3)])
    assert parts.shape[0] == 50 and np.array_equal(parts, np.load(whole))


def test_own_data_recipe_runs_as_written_on_a_tiny_set(tiny_npz: Path, tmp_path: Path) -> None:
    """The "Train on your own data" commands, verbatim but for the data path: epoch lines with the time
    left, a sample grid in the run folder, and an artifact; any warning names the flag to act on."""
    section = README.split("### Train on your own data", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, flags=re.S)
    assert block is not None, "the own-data section has no command block"
    recipe = block.group(1).splitlines()[0]
    assert recipe.startswith("cvae-sdk train --data my-set.npz --out run && cvae-sdk export run")
    command = recipe.replace("my-set.npz", str(tiny_npz)).replace("cvae-sdk ", f"{sys.executable} -m cvae_sdk ")
    done = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    epochs = [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert epochs and "left" in epochs[0]                       # one line per epoch, with the time left
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert all(re.search(r" --[a-z]", line) for line in warnings), warnings  # each names the flag to try
    assert (tmp_path / "run" / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "my-model.onnx").is_file()
