"""The wheel: a regular (non-editable) install in a fresh venv finds the shipped model offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import sys
from cvae_sdk import Generator
gen = Generator.from_pretrained()
out = gen.generate([3, 7], num_samples_per_label=2, rng=0)
assert 'site-packages' in str(gen.model_path), gen.model_path
assert out.samples.shape == (4, 1, 28, 28)
int8 = Generator.from_pretrained(variant='int8')
assert int8.model_path == gen.model_path.with_name('mnist-cvae.int8.onnx'), int8.model_path
assert int8.generate([3, 7], num_samples_per_label=2, rng=0).samples.shape == (4, 1, 28, 28)
from cvae_sdk.fastpath import TAKE_ROWS
assert all(k.is_file() and 'site-packages' in str(k) for k in TAKE_ROWS.values()), TAKE_ROWS
from importlib import resources
assert (resources.files('cvae_sdk') / 'web' / 'index.html').is_file()
print('OK', gen.model_path.name, 'torch' in sys.modules)
"""


@pytest.mark.slow
def test_wheel_ships_the_model_and_runs_without_torch(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheel = next(dist.glob("cvae_sdk-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist() if ".dist-info/" not in name}
    # no generic import names in the user's site-packages: only cvae_sdk... names
    assert top_level == {"cvae_sdk", "cvae_sdk_training"}, top_level
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # onnxruntime, numpy and typer come from the package index the machine is configured with
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", f"{wheel}[cpu]"], capture_output=True,
                             text=True, timeout=900, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert install.returncode == 0, install.stderr[-3000:]
    run = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "OK mnist-cvae.onnx False"
    cli = subprocess.run([str(env_dir / "bin" / "cvae-sdk"), "sample", "--label", "3", "--n", "4", "--out",
                          str(tmp_path / "s.png"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


# import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "prometheus_client": "prometheus-client"}


def test_every_third_party_import_of_the_runtime_is_declared() -> None:
    """numpy and typer as dependencies; onnxruntime, fastapi, onnx ... in the extra of the feature that needs them."""
    import ast
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in requirements}
    imported: set[str] = set()
    for path in (ROOT / "cvae_sdk").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "cvae_sdk"}
    assert third_party >= {"numpy", "onnxruntime", "typer", "rich"}
    undeclared = sorted(name for name in third_party if DISTRIBUTION.get(name, name).lower() not in declared)
    assert undeclared == []


def test_every_runtime_package_is_in_the_wheel() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "cvae_sdk").rglob("__init__.py")}
    assert found - listed == set()


def test_the_dev_extra_installs_what_the_served_and_benched_features_need() -> None:
    """README's test command installs [cpu,train,dev]: dev must bring every requirement of [serve] and [bench]."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in requirements}

    assert names(extras["serve"] + extras["bench"]) - names(extras["dev"] + extras["train"]) == set()
