"""The open artifact contract: `cvae-sdk validate` on any file, and `cvae-sdk wrap` for foreign decoders.

The foreign decoders here are built the way tf2onnx writes a Keras model: inputs named
``input_1``/``input_2`` with an unknown batch, a Concat, Dense layers as MatMul + Add, and a flat
``(N, H*W)`` output named after the last layer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cvae_sdk import ArtifactError, Generator, shipped_model_path
from cvae_sdk.validate import validate_artifact
from cvae_sdk.wrap import wrap_decoder

LATENT, CLASSES, SHAPE = 4, 3, (1, 12, 12)
NAMES = ["top", "middle", "bottom"]


def keras_like_decoder(path: Path, *, head: str = "Sigmoid", label_weight: float = 1.0,
                       mix_batch: bool = False) -> Path:
    """A 2-layer MLP decoder (z, one-hot y) -> (N, 144) with Keras-style names; seeded weights."""
    rng = np.random.default_rng(0)
    hidden, pixels = 32, int(np.prod(SHAPE))
    w1 = rng.normal(0, 0.5, (LATENT + CLASSES, hidden)).astype(np.float32)
    w1[LATENT:] *= label_weight  # 0 makes a decoder that ignores the label
    w2 = rng.normal(0, 0.5, (hidden, pixels)).astype(np.float32)
    nodes = [helper.make_node("Concat", ["input_1", "input_2"], ["concat"], axis=1),
             helper.make_node("MatMul", ["concat", "dense/kernel"], ["h"]),
             helper.make_node("Relu", ["h"], ["h_relu"]),
             helper.make_node("MatMul", ["h_relu", "dense_1/kernel"], ["logits"])]
    last, extra = "logits", []
    if mix_batch:  # subtract the batch mean: each row then depends on the others
        nodes += [helper.make_node("ReduceMean", ["logits", "axis0"], ["batch_mean"], keepdims=1),
                  helper.make_node("Sub", ["logits", "batch_mean"], ["centred"])]
        last, extra = "centred", [numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0")]
    nodes.append(helper.make_node(head, [last], ["dense_1"]))
    graph = helper.make_graph(
        nodes, "keras_decoder",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__0", LATENT]),
         helper.make_tensor_value_info("input_2", TensorProto.FLOAT, ["unk__0", CLASSES])],
        [helper.make_tensor_value_info("dense_1", TensorProto.FLOAT, ["unk__0", pixels])],
        [numpy_helper.from_array(w1, "dense/kernel"), numpy_helper.from_array(w2, "dense_1/kernel"), *extra])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cvae_sdk", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def test_validate_passes_the_shipped_model_and_prints_json() -> None:
    done = _cli("validate", str(shipped_model_path()))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] and [c["name"] for c in report["checks"]] == [
        "loads", "metadata", "signature", "runs", "batch_independent", "uses_label"]


def test_validate_names_what_a_foreign_file_lacks(tmp_path: Path) -> None:
    done = _cli("validate", str(keras_like_decoder(tmp_path / "keras.onnx")))
    assert done.returncode == 1
    assert "FAIL  metadata" in done.stdout and "cvae-sdk wrap" in done.stdout
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    report = validate_artifact(junk)
    assert not report.ok and report.checks[-1].name == "loads"


def test_wrapped_keras_decoder_validates_and_serves(tmp_path: Path) -> None:
    source = keras_like_decoder(tmp_path / "keras.onnx")
    out = tmp_path / "wrapped.onnx"
    done = _cli("wrap", str(source), "--out", str(out), "--sample-shape", "1,12,12", "--class-names", ",".join(NAMES))
    assert done.returncode == 0, done.stderr
    assert validate_artifact(out).ok
    gen = Generator.from_pretrained(out)
    assert gen.config.producer == "cvae-sdk wrap" and gen.config.prior.source == "standard"
    result = gen.generate(["top", "bottom"], 3, rng=0)
    assert result.samples.shape == (6, *SHAPE) and result.labels.tolist() == [0, 0, 0, 2, 2, 2]
    # The wrapped graph computes what the source computed.
    import onnxruntime as ort

    raw = ort.InferenceSession(str(source)).run(None, {"input_1": result.latents,
                                                         "input_2": np.eye(3, dtype=np.float32)[result.labels]})[0]
    np.testing.assert_allclose(result.samples.reshape(6, -1), raw, atol=1e-6)


def test_wrap_appends_a_sigmoid_for_logits(tmp_path: Path) -> None:
    source = keras_like_decoder(tmp_path / "logits.onnx", head="Identity")
    with pytest.raises(ArtifactError, match="'runs'.*--logits"):
        wrap_decoder(source, tmp_path / "no.onnx", class_names=NAMES, sample_shape=SHAPE)
    assert not (tmp_path / "no.onnx").exists()
    wrap_decoder(source, tmp_path / "yes.onnx", class_names=NAMES, sample_shape=SHAPE, logits=True)
    assert validate_artifact(tmp_path / "yes.onnx").ok


@pytest.mark.parametrize(("options", "check"), [
    ({"label_weight": 0.0}, "uses_label"),
    ({"mix_batch": True}, "batch_independent"),
])
def test_wrap_refuses_decoders_that_break_the_contract(tmp_path: Path, options: dict, check: str) -> None:  # type: ignore[type-arg]
    source = keras_like_decoder(tmp_path / "bad.onnx", **options)
    out = tmp_path / "bad-wrapped.onnx"
    with pytest.raises(ArtifactError, match=f"contract check '{check}'"):
        wrap_decoder(source, out, class_names=NAMES, sample_shape=SHAPE)
    assert not out.exists() and list(tmp_path.iterdir()) == [source]  # a failed check writes nothing


def test_wrap_input_errors_name_the_fix(tmp_path: Path) -> None:
    source = keras_like_decoder(tmp_path / "keras.onnx")
    with pytest.raises(ValueError, match="cannot tell z from y by width"):
        wrap_decoder(source, tmp_path / "a.onnx", class_names=list("abcde"), sample_shape=SHAPE)
    with pytest.raises(ValueError, match="'latent' is not in the graph; its inputs are"):
        wrap_decoder(source, tmp_path / "a.onnx", class_names=NAMES, sample_shape=SHAPE, z_input="latent")
    done = _cli("wrap", str(source), "--out", str(tmp_path / "b.onnx"), "--sample-shape", "1,12")
    assert done.returncode == 2 and "pass exactly one of --class-names" in done.stderr
    done = _cli("wrap", str(source), "--out", str(tmp_path / "b.onnx"), "--sample-shape", "12,12", "--num-classes", "3")
    assert done.returncode == 2 and "sample_shape must be C,H,W" in done.stderr


def test_validate_catches_a_fixed_batch_axis(tiny_model: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_model))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 8
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    report = validate_artifact(fixed)
    assert not report.ok and report.checks[-1].name == "signature"
    assert "fixed batch dimension 8" in report.checks[-1].detail and "dynamic_shapes" in report.checks[-1].detail


def test_wrap_refuses_a_corrupt_file_and_an_artifact_in_one_line(tiny_model: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage-not-a-protobuf" * 10)
    for source, message in ((corrupt, "is not a readable ONNX model"),
                            (tiny_model, "already a cvae-sdk artifact; wrapping would replace its prior")):
        done = subprocess.run([sys.executable, "-m", "cvae_sdk", "wrap", str(source), "--out", str(tmp_path / "w.onnx"),
                               "--sample-shape", "1,12,12", "--class-names", "a,b,c"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert not (tmp_path / "w.onnx").exists()
