"""Opt-in int8 artifacts: onnxruntime dynamic quantisation, behind a label-fidelity gate.

The int8 file is written only if its label fidelity (judged by the evaluation classifier on the
same seeded samples) is at most ``MAX_FIDELITY_DROP`` below the fp32 artifact's.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk.artifact import METADATA_KEY, parse_metadata
from cvae_sdk.atomic import atomic_path
from cvae_sdk.evaluate import EvalClassifier
from cvae_sdk.generator import Generator
from training.export import ExportCheckError

MAX_FIDELITY_DROP = 0.003  # 0.3 percentage points
GATE_SAMPLES_PER_LABEL = 1000


def quantize_artifact(fp32: Path, out: Path, classifier: EvalClassifier, *,
                      samples_per_label: int = GATE_SAMPLES_PER_LABEL, seed: int = 0) -> dict[str, Any]:
    """Quantise ``fp32`` to int8 into ``out`` if it passes the fidelity gate; returns the gate's numbers."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as folder:
        pre, raw = Path(folder) / "pre.onnx", Path(folder) / "int8.onnx"
        # the dynamo export's value_info trips quantize_dynamic's shape inference; re-infer first
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(pre, raw, weight_type=QuantType.QInt8)
        proto = onnx.load(str(raw))
    config = dataclasses.replace(parse_metadata({p.key: p.value for p in proto.metadata_props}, str(fp32)),
                                 quantization="int8-dynamic")
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {METADATA_KEY: config.to_json()})
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    with tempfile.TemporaryDirectory() as folder:
        candidate = Path(folder) / "candidate.onnx"
        candidate.write_bytes(data)
        gate = fidelity_gate(fp32, candidate, classifier, samples_per_label, seed)
    if not gate["passed"]:
        raise ExportCheckError(f"int8 accuracy gate failed: label fidelity {gate['int8_fidelity']:.4f} vs fp32 "
                               f"{gate['fp32_fidelity']:.4f} (allowed drop {MAX_FIDELITY_DROP}); nothing was written")
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return gate


def fidelity_gate(fp32: Path, int8: Path, classifier: EvalClassifier, samples_per_label: int,
                  seed: int) -> dict[str, Any]:
    results = {}
    outputs = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        gen = Generator.from_pretrained(path, providers=["CPUExecutionProvider"])
        out = gen.generate(list(range(gen.config.num_classes)), samples_per_label, rng=seed)
        predicted, _ = classifier.predict(out.samples)
        results[name] = float((predicted == out.labels).mean())
        outputs[name] = out.samples
    drop = results["fp32"] - results["int8"]
    return {"fp32_fidelity": results["fp32"], "int8_fidelity": results["int8"], "fidelity_drop": drop,
            "max_abs_pixel_diff": float(np.abs(outputs["fp32"] - outputs["int8"]).max()),
            "samples_per_label": samples_per_label, "passed": drop <= MAX_FIDELITY_DROP}
