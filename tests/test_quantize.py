"""Reduced-precision variants: int8 (static quantisation, calibrated on the prior) and fp16,
behind a label-fidelity gate that can refuse to write."""

from __future__ import annotations

import json
from pathlib import Path

import cvae_sdk_training.quantize as quantize_module
import numpy as np
import onnx
import pytest
from conftest import tiny_config
from typer.testing import CliRunner

from cvae_sdk import Generator
from cvae_sdk.cli import app
from cvae_sdk.validate import validate_artifact


@pytest.fixture(scope="module")
def variants(tiny_run: Path, tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("variants") / "m.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(out), "--allow-low-fidelity",
                                      "--int8", "--fp16",
                                      "--classifier", str(tiny_classifier)])
    assert result.exit_code == 0, result.output
    summary: dict = json.loads(result.output.strip().splitlines()[-1])  # type: ignore[type-arg]
    return summary


@pytest.mark.parametrize(("variant", "tag"), [("int8", "int8-static"), ("fp16", "fp16")])
def test_variant_passes_gate_and_serves(variants: dict, variant: str, tag: str) -> None:  # type: ignore[type-arg]
    path = Path(variants[variant]["artifact"])
    assert path.name == f"m.{variant}.onnx" and variants[variant]["passed"]
    assert variants[variant]["fidelity_drop"] <= 0.003
    assert validate_artifact(path).ok  # the contract (float32 z, y -> samples) is unchanged
    gen = Generator.from_pretrained(path)
    assert gen.config.quantization == tag
    assert gen.generate([0, 1], 2, rng=0).samples.shape == (4, 1, 12, 12)


def test_fp16_computes_in_half_precision(variants: dict) -> None:  # type: ignore[type-arg]
    fp16, fp32 = Path(variants["fp16"]["artifact"]), Path(variants["artifact"])
    weights = [t for t in onnx.load(str(fp16)).graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert weights and not [t for t in onnx.load(str(fp16)).graph.initializer
                            if t.data_type == onnx.TensorProto.FLOAT]
    def weight_bytes(path: Path) -> int:
        return sum(len(t.raw_data) for t in onnx.load(str(path)).graph.initializer)

    assert weight_bytes(fp16) < 0.55 * weight_bytes(fp32)
    a = Generator.from_pretrained(fp16).generate([0, 1, 2], 50, rng=4).samples
    b = Generator.from_pretrained(fp32).generate([0, 1, 2], 50, rng=4).samples
    assert a.dtype == np.float32 and 0 < np.abs(a - b).max() < 2e-2


@pytest.mark.parametrize("variant", ["int8", "fp16"])
def test_failed_gate_writes_no_file(tiny_run: Path, tiny_classifier: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, variant: str) -> None:
    monkeypatch.setattr(quantize_module, "MAX_FIDELITY_DROP", -1.0)  # a gate nothing can pass
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "m.onnx"),
                                      "--allow-low-fidelity", f"--{variant}",
                                      "--classifier", str(tiny_classifier)])
    assert result.exit_code == 2 and f"error: {variant} accuracy gate failed" in result.stderr
    assert not (tmp_path / f"m.{variant}.onnx").exists()
    summary = json.loads(result.stdout.strip().splitlines()[-1])  # the float32 result is kept and reported
    assert summary["artifact"] == str(tmp_path / "m.onnx") and (tmp_path / "m.onnx").is_file()
    assert f"{variant} accuracy gate failed" in summary[variant]["refused"]


def test_variants_without_a_classifier_are_refused_before_work(tiny_run: Path, tmp_path: Path) -> None:
    """A run keeps its classifier for the gate; a checkpoint moved away from it needs --classifier."""
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "best.pt").write_bytes((tiny_run / "best.pt").read_bytes())
    for flag in ("--int8", "--fp16"):
        result = CliRunner().invoke(app, ["export", str(moved / "best.pt"), "--out", str(tmp_path / "m.onnx"), flag,
                                              "--allow-low-fidelity"])
        assert result.exit_code == 2 and "--classifier" in result.output
        assert sorted(p.name for p in tmp_path.iterdir()) == ["moved"]


@pytest.mark.parametrize(("upsample", "int8", "kept_float"), [("subpixel", ("Gemm", "Conv"), ()),
                                                              ("transpose", ("Gemm",), ("ConvTranspose",))])
def test_int8_quantises_only_what_runs_in_int8(tiny_npz: Path, tmp_path: Path, upsample: str,
                                               int8: tuple[str, ...], kept_float: tuple[str, ...]) -> None:
    # onnxruntime has no int8 ConvTranspose on CPU: Q/DQ around it would only dequantise its
    # weight on every run, so a transposed-conv decoder's ConvTransposes stay float; Gemm and Conv go int8,
    # except the first layer, which reads z and y themselves
    from cvae_sdk_training.export import export_generator
    from cvae_sdk_training.trainer import train

    train(tiny_config(tiny_npz, tmp_path / "run", arch="conv", upsample=upsample, epochs=1), progress=False)
    export_generator(tmp_path / "run", tmp_path / "conv.onnx", allow_low_fidelity=True)
    graph = quantize_module._int8(tmp_path / "conv.onnx").graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    first = {node.name for node in graph.node if {"z", "y"} & set(node.input)}  # the input layer stays float32
    assert first and all(made_by.get(name) != "DequantizeLinear" for node in graph.node if node.name in first
                         for name in node.input)
    fed = {op: [made_by.get(name) for node in graph.node if node.op_type == op and node.name not in first
                for name in node.input[:2]] for op in int8 + kept_float}
    for op in int8:
        assert fed[op] and set(fed[op]) == {"DequantizeLinear"}, op
    for op in kept_float:
        assert fed[op] and "DequantizeLinear" not in fed[op], op
