"""The training-backend contract: what any registered backend must deliver.

Every backend found in the registry (built-ins and the ``cvae_sdk.training_backends`` entry
points) trains a tiny run and exports an artifact that the Generator serves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from cvae_sdk import Generator
from cvae_sdk.backends import TrainingBackend, available_backends, get_backend


@pytest.mark.parametrize("name", sorted(available_backends()))
def test_backend_meets_the_contract(name: str, tiny_npz: Path, tmp_path: Path) -> None:
    backend = get_backend(name)
    assert isinstance(backend, TrainingBackend) and backend.name == name
    result = backend.train(tiny_config(tiny_npz, tmp_path / "run"), progress=False)
    assert result.epochs_completed == 2 and np.isfinite(result.best_val_elbo)
    assert result.best_checkpoint.is_file() and result.last_checkpoint.is_file()
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and all("val_elbo" in r for r in lines)
    artifact = backend.export(result.run_dir, tmp_path / "model.onnx")
    gen = Generator.from_pretrained(artifact)
    out = gen.generate(["top", "bottom"], 3, rng=0)
    assert out.samples.shape == (6, 1, 12, 12) and out.labels.tolist() == [0, 0, 0, 2, 2, 2]


def test_torch_is_built_in_and_unknown_names_are_explained() -> None:
    assert "torch" in available_backends()
    with pytest.raises(ValueError, match="unknown training backend 'jax'; available"):
        get_backend("jax")
