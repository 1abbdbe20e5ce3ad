"""The runtime stays light: importing and sampling loads numpy and onnxruntime, never torch or onnx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
