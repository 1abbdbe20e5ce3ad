"""The runtime stays light: importing and sampling loads numpy and onnxruntime, never torch or onnx."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[1] / "cvae_sdk"

PROBE = """
import sys
import cvae_sdk
from cvae_sdk import Generator
gen = Generator.from_pretrained({path!r})
out = gen.generate([0], 2, rng=0)
heavy = sorted(m for m in ('torch', 'onnx', 'onnxscript', 'matplotlib') if m in sys.modules)
print('HEAVY=' + ','.join(heavy))
print('SHAPE=' + str(out.samples.shape))
"""


def test_import_and_generate_do_not_load_torch_or_onnx(tiny_model: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE.format(path=str(tiny_model))], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY=\n" in done.stdout
    assert "SHAPE=(2, 1, 12, 12)" in done.stdout


def test_cli_sample_does_not_load_torch(tiny_model: Path, tmp_path: Path) -> None:
    code = ("import sys, runpy; sys.argv=['cvae-sdk','sample','--model',{m!r},'--label','0','--out',{o!r},'--quiet'];"
            "\ntry:\n    runpy.run_module('cvae_sdk', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('TORCH=' + str('torch' in sys.modules))").format(m=str(tiny_model), o=str(tmp_path / "g.png"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TORCH=False" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "g.png").is_file()


def test_no_runtime_module_imports_the_training_package() -> None:
    """The runtime reaches training only through the ``cvae_sdk.training_backends`` entry point."""
    offenders = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {name}" for name in names
                          if name.split(".")[0] in ("training", "cvae_sdk_training")]
    assert offenders == []


def test_import_without_onnxruntime_names_the_extra_to_install() -> None:
    probe = "import sys; sys.modules['onnxruntime'] = None; import cvae_sdk"  # as if it were not installed
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode != 0
    assert "pip install 'cvae-sdk[cpu]', or 'cvae-sdk[gpu]' on NVIDIA GPUs" in done.stderr.splitlines()[-1]
