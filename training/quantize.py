"""Opt-in reduced-precision artifacts behind a label-fidelity gate: int8 (CPU) and fp16 (GPU).

- ``int8``: onnxruntime static quantisation (QDQ; int8 weights per channel, uint8 activations)
  of the ops its CPU provider runs in int8 (``INT8_OPS``), with activation ranges calibrated on
  the artifact's own prior samples. Static, not dynamic: dynamic quantisation picks activation
  scales per call, so a sample would depend on the rest of its batch (``cvae-sdk validate``
  catches that), breaking bit-exact chunking and sharding.
- ``fp16``: every float weight and activation in float16, with float32 ``z``/``y``/``samples``
  at the edges so the artifact contract is unchanged. A GPU lever (tensor cores, half the
  memory traffic); on CPU it is no faster.

A variant is written only if its label fidelity (judged by the evaluation classifier on the same
seeded samples) is at most ``MAX_FIDELITY_DROP`` below the fp32 artifact's.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cvae_sdk.artifact import INPUT_Y, INPUT_Z, read_metadata, write_metadata
from cvae_sdk.atomic import atomic_path
from cvae_sdk.generator import Generator, Variant
from cvae_sdk.labels import request_labels
from cvae_sdk.latents import prior_latents, request_key
from cvae_sdk.quality import EvalClassifier

from .export import ExportCheckError

MAX_FIDELITY_DROP = 0.003  # 0.3 percentage points
GATE_SAMPLES_PER_LABEL = 1000
QUANTIZATION_TAG = {"int8": "int8-static", "fp16": "fp16"}
CALIBRATION_BATCHES, CALIBRATION_PER_LABEL = 8, 64
# Ops quantised: those onnxruntime's CPU provider runs in int8, and the ReLUs after them, folded
# into their output range (else each int8 op's output is dequantised, ReLU'd in float32 and
# quantised again: an eighth of onnxruntime's int8 profile at batch 256). onnxruntime keeps the
# reshapes and transposes between quantised ops in uint8 by itself. ConvTranspose is left out: it
# has no int8 kernel, so Q/DQ pairs around it (and its weight dequantised on every run) only add
# time (transposed-conv model: batch 1 +23%, batch 4096 +9% without them).
INT8_OPS = ["Gemm", "MatMul", "Conv", "Relu"]


def quantize_artifact(fp32: Path, out: Path, classifier: EvalClassifier, *, variant: Variant = "int8",
                      samples_per_label: int = GATE_SAMPLES_PER_LABEL, seed: int = 0) -> dict[str, Any]:
    """Write the ``variant`` of ``fp32`` to ``out`` if it passes the fidelity gate; returns the gate's numbers."""
    import onnx

    if variant not in QUANTIZATION_TAG:
        raise ValueError(f"variant must be one of {sorted(QUANTIZATION_TAG)}, got {variant!r}")
    proto = _int8(fp32) if variant == "int8" else _fp16(onnx.load(str(fp32)))
    write_metadata(proto, dataclasses.replace(read_metadata(proto, str(fp32)), quantization=QUANTIZATION_TAG[variant]))
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    with tempfile.TemporaryDirectory() as folder:
        candidate = Path(folder) / "candidate.onnx"
        candidate.write_bytes(data)
        gate = fidelity_gate(fp32, candidate, classifier, samples_per_label, seed)
    if not gate["passed"]:
        raise ExportCheckError(f"{variant} accuracy gate failed: label fidelity {gate['variant_fidelity']:.4f} vs "
                               f"fp32 {gate['fp32_fidelity']:.4f} (allowed drop {MAX_FIDELITY_DROP}); "
                               "nothing was written")
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return {"variant": variant, **gate}


def _int8(fp32: Path) -> Any:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    config = Generator.from_pretrained(fp32, providers=["CPUExecutionProvider"]).config
    eye = np.eye(config.num_classes, dtype=np.float32)
    ids = request_labels(list(range(config.num_classes)), CALIBRATION_PER_LABEL, config.class_names)
    temperature = config.sampling_temperature(None)
    feeds = []
    for batch in range(CALIBRATION_BATCHES):  # what the decoder will see: z from the shipped prior (no decoding)
        z = prior_latents(config.prior, ids, request_key(10_000 + batch), 0, temperature)
        feeds.append({INPUT_Z: z, INPUT_Y: eye[ids]})

    class PriorSamples(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as folder:
        pre, raw = Path(folder) / "pre.onnx", Path(folder) / "int8.onnx"
        # the dynamo export's value_info trips the quantiser's shape inference; re-infer first
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(pre, raw, PriorSamples(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=INT8_OPS, nodes_to_exclude=_input_layers(onnx.load(str(pre))))
        return onnx.load(str(raw))


def _input_layers(proto: Any) -> list[str]:
    """The nodes that read z or y themselves: the first layer, (D + K) x hidden multiply-adds per
    row. Left in float32, z and y need no quantising and the int8 graph starts at the first wide
    layer (at batch 1 the small quantised ops around the inputs cost more than they save)."""
    return [node.name for node in proto.graph.node if {INPUT_Z, INPUT_Y} & set(node.input)]


def _fp16(proto: Any) -> Any:
    """onnxruntime's float16 converter, keeping float32 at the inputs and the output (it inserts Casts)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(convert_float_to_float16(proto, keep_io_types=True))
    model.topological_sort()  # the converter appends its input Casts after the nodes that read them
    return model.model


def fidelity_gate(fp32: Path, candidate: Path, classifier: EvalClassifier, samples_per_label: int,
                  seed: int, providers: list[Any] | None = None) -> dict[str, Any]:
    """Label fidelity of both files on the same seeded samples, each run on ``providers`` (default: CPU)."""
    results = {}
    outputs = {}
    for name, path in (("fp32", fp32), ("variant", candidate)):
        gen = Generator.from_pretrained(path, providers=providers or ["CPUExecutionProvider"])
        out = gen.generate(list(range(gen.config.num_classes)), samples_per_label, rng=seed)
        predicted, _ = classifier.predict(out.samples)
        results[name] = float((predicted == out.labels).mean())
        outputs[name] = out.samples
    drop = results["fp32"] - results["variant"]
    return {"fp32_fidelity": results["fp32"], "variant_fidelity": results["variant"], "fidelity_drop": drop,
            "max_abs_pixel_diff": float(np.abs(outputs["fp32"] - outputs["variant"]).max()),
            "samples_per_label": samples_per_label, "passed": drop <= MAX_FIDELITY_DROP}
