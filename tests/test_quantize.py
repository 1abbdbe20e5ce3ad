"""int8 export: a real dynamic quantisation behind a label-fidelity gate that can refuse to write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import training.quantize as quantize_module
from cvae_sdk import Generator
from cvae_sdk.cli import app


def test_int8_export_passes_gate_and_serves(tiny_run: Path, tiny_classifier: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(out), "--int8", "--classifier",
                                      str(tiny_classifier)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    int8 = Path(summary["int8"]["artifact"])
    assert int8.name == "m.int8.onnx" and summary["int8"]["passed"]
    assert summary["int8"]["fidelity_drop"] <= 0.003
    gen = Generator.from_pretrained(int8)
    assert gen.config.quantization == "int8-dynamic"
    assert gen.generate([0, 1], 2, rng=0).samples.shape == (4, 1, 12, 12)


def test_failed_gate_writes_no_int8_file(tiny_run: Path, tiny_classifier: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantize_module, "MAX_FIDELITY_DROP", -1.0)  # a gate nothing can pass
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "m.onnx"), "--int8",
                                      "--classifier", str(tiny_classifier)])
    assert result.exit_code == 2 and "int8 accuracy gate failed" in result.output
    assert not (tmp_path / "m.int8.onnx").exists()


def test_int8_without_a_classifier_is_refused_before_work(tiny_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "m.onnx"), "--int8"])
    assert result.exit_code == 2 and "--classifier" in result.output
    assert list(tmp_path.iterdir()) == []
