"""The training-backend contract: what any registered backend must deliver.

Every backend in the registry (the built-in ``torch``, and ``minimal`` from the test package in
``tests/minimal_backend``, pip-installed for this session and found through its
``cvae_sdk.training_backends`` entry point) trains a tiny run and exports an artifact that the
Generator serves and ``validate`` passes.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from cvae_sdk import Generator
from cvae_sdk.backends import TrainingBackend, available_backends, get_backend
from cvae_sdk.validate import validate_artifact

MINIMAL_PACKAGE = Path(__file__).resolve().parent / "minimal_backend"


@pytest.fixture(scope="session")
def minimal_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install the second backend into a folder and put it on sys.path, as an installed package is."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(MINIMAL_PACKAGE)], check=True,
                   stdin=subprocess.DEVNULL)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("cvae_minimal_backend", None)


def test_the_second_backend_is_found_through_its_entry_point(minimal_backend: Path) -> None:
    assert available_backends()["minimal"] == "cvae_minimal_backend:LinearBackend"
    assert available_backends()["torch"] == "cvae_sdk_training.backend:TorchBackend"


@pytest.mark.parametrize("name", ["torch", "minimal"])
def test_backend_meets_the_contract(name: str, minimal_backend: Path, tiny_npz: Path, tmp_path: Path) -> None:
    backend = get_backend(name)
    assert isinstance(backend, TrainingBackend) and backend.name == name
    result = backend.train(tiny_config(tiny_npz, tmp_path / "run"), progress=False)
    assert result.epochs_completed == 2 and np.isfinite(result.best_val_elbo)
    assert result.best_checkpoint.is_file() and result.last_checkpoint.is_file()
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and all("val_elbo" in r for r in lines)
    artifact = backend.export(result.run_dir, tmp_path / "model.onnx", allow_low_fidelity=True)
    report = validate_artifact(artifact)
    assert report.ok, report.to_json()
    gen = Generator.from_pretrained(artifact)
    out = gen.generate(["top", "bottom"], 3, rng=0)
    assert out.samples.shape == (6, 1, 12, 12) and out.labels.tolist() == [0, 0, 0, 2, 2, 2]
    assert np.array_equal(out.samples, gen.generate(["top", "bottom"], 3, rng=0).samples)


def test_the_cli_trains_and_exports_with_the_second_backend(minimal_backend: Path, tiny_npz: Path,
                                                            tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(minimal_backend), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cvae_sdk", *args], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL)

    run, model = tmp_path / "run", tmp_path / "linear.onnx"
    trained = cli("train", "--backend", "minimal", "--data", str(tiny_npz), "--out", str(run), "--epochs", "5",
                  "--latent-dim", "3", "--quiet")
    assert trained.returncode == 0, trained.stderr
    elbos = [json.loads(line)["val_elbo"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(elbos) == 5 and elbos[-1] > elbos[0]  # EM never lowers the likelihood
    assert cli("export", str(run), "--out", str(model), "--backend", "minimal").returncode == 0
    sampled = cli("sample", "--model", str(model), "--label", "middle", "--n", "4", "--out", str(tmp_path / "s.png"))
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_names_are_explained() -> None:
    with pytest.raises(ValueError, match="unknown training backend 'jax'; available"):
        get_backend("jax")


def test_without_torch_the_cli_names_the_extra_to_install(tiny_npz: Path, tmp_path: Path) -> None:
    code = ("import sys; sys.modules['torch'] = None\n"  # as if the [train] extra were not installed
            "from cvae_sdk.cli import main\n"
            f"sys.argv = ['cvae-sdk', 'train', '--data', {str(tiny_npz)!r}, '--out', {str(tmp_path / 'r')!r}]\n"
            "main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "pip install 'cvae-sdk[train]'" in done.stderr
    assert not (tmp_path / "r").exists()
